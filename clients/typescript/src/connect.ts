// The browser side: open the Connect page in a popup and resolve with the connection once
// the popup posts `tether:connected` (it posts only to the app's allowed origins).

import { ConnectError } from "./errors.js";

export interface OpenConnectOptions {
  /** Tether's origin (`new URL(connectUrl).origin` by default): messages from any other
   * origin are ignored. */
  tetherOrigin?: string;
  width?: number;
  height?: number;
  /** The window to open from (for tests and iframes); `window` by default. */
  window?: Window;
}

export interface Connected {
  connectionId: string;
  integration: string;
}

/**
 * Opens `connectUrl` (from `connectSessions.create`) as a popup and waits for the outcome.
 * Call it from a click handler, or the browser may block the popup.
 */
export function openConnect(connectUrl: string, options: OpenConnectOptions = {}): Promise<Connected> {
  const host = options.window ?? window;
  const origin = options.tetherOrigin ?? new URL(connectUrl, host.location.href).origin;
  const width = options.width ?? 480;
  const height = options.height ?? 720;
  return new Promise((resolve, reject) => {
    const popup = host.open(connectUrl, "tether-connect", `popup,width=${width},height=${height}`);
    if (!popup) {
      reject(new ConnectError("popup_blocked"));
      return;
    }
    let settled = false;
    const finish = () => {
      settled = true;
      host.removeEventListener("message", onMessage);
      host.clearInterval(watch);
    };
    const onMessage = (event: MessageEvent) => {
      if (event.origin !== origin || event.source !== popup) return;
      const data = event.data as { type?: string; connection_id?: string; integration?: string; code?: string; reference?: string };
      if (data?.type === "tether:connected" && typeof data.connection_id === "string") {
        finish();
        resolve({ connectionId: data.connection_id, integration: String(data.integration ?? "") });
      } else if (data?.type === "tether:error") {
        finish();
        reject(new ConnectError(String(data.code ?? "unknown"), data.reference ?? null));
      }
    };
    // A popup closed by the person never posts: notice it. The popup also closes itself
    // right after posting, so give a message already on its way a moment to arrive.
    const watch = host.setInterval(() => {
      if (!popup.closed) return;
      host.clearInterval(watch);
      host.setTimeout(() => {
        if (settled) return;
        finish();
        reject(new ConnectError("popup_closed"));
      }, 300);
    }, 250);
    host.addEventListener("message", onMessage);
  });
}
