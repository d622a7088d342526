"""wazo-auth 0.1, the parts clients use: tokens, ACLs, tenants, passwords."""
