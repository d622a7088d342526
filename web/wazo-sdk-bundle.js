// Wazo's JavaScript SDK (@wazo/sdk, a development dependency) in one ES module, as an app built on it would ship
// it: tests/browser/test_wazo_sdk.py runs its guest meeting flow from a page on another origin. Not served.
export { default } from "@wazo/sdk";
