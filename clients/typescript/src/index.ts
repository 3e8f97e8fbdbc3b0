// tether-client: Tether's HTTP API from TypeScript (server side), webhook verification
// (server side) and the Connect popup (browser side). No dependencies beyond `fetch` and
// Web Crypto.

export { Tether, Proxy } from "./client.js";
export type { TetherOptions } from "./client.js";
export { TetherError, ConnectError } from "./errors.js";
export { verifyWebhook } from "./webhook.js";
export type { VerifyOptions } from "./webhook.js";
export { openConnect } from "./connect.js";
export type { Connected, OpenConnectOptions } from "./connect.js";
export type * from "./types.js";
