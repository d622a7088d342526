// What the apps use of sip.js, bundled into one ES module at set-up (`make web-deps`: npm run build, esbuild) into
// web/node_modules/.cache/meetings-web/sip-bundle.js, never committed. The gateway serves it at
// /vendor/sip-bundle.js; the pages map the bare specifier "sip.js" to it (import map). Without the bundle, the
// gateway serves a module that re-exports these from sip.js's own ES modules instead (slower: ~190 requests).
export { Inviter, Registerer, RegistererState, SessionState, UserAgent } from "sip.js/lib/api/index.js";
export { SessionDescriptionHandler } from "sip.js/lib/platform/web/session-description-handler/session-description-handler.js";
