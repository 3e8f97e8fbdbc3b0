// The app's side of Tether's HTTP API: typed calls with the API key, errors as
// `TetherError`, and the proxy. Uses only `fetch`; nothing else at run time.

import { TetherError } from "./errors.js";
import type {
  AgentAuthorizationRedirect,
  AgentAuthorizationRequest,
  ApproveAgentAuthorization,
  AgentToken,
  AgentTokenCreated,
  CreateAgentToken,
  Connection,
  ConnectionFilter,
  ConnectSession,
  CreateConnectSession,
  Credentials,
  ImportConnection,
  Integration,
  Provider,
  WebhookDelivery,
  ConnectionEventList,
  WebhookDeliveryFilter,
  VerifyResult,
} from "./types.js";

export interface TetherOptions {
  /** Where Tether listens, e.g. `https://tether.example.com`. */
  baseUrl: string;
  /** The app's secret API key. Server-side only: never ship it to a browser. */
  apiKey: string;
  /** A `fetch` to use instead of the global one. */
  fetch?: typeof fetch;
}

type Query = Record<string, string | number | boolean | undefined>;

/** A client for one Tether deployment. */
export class Tether {
  readonly connectSessions: {
    create(body: CreateConnectSession): Promise<ConnectSession>;
  };
  readonly connections: {
    list(filter?: ConnectionFilter): Promise<Connection[]>;
    get(id: string): Promise<Connection>;
    credentials(id: string, options?: { forceRefresh?: boolean }): Promise<Credentials>;
    import(body: ImportConnection): Promise<Connection>;
    delete(id: string): Promise<void>;
    /** Runs the provider's check call now: ok, refused (with the reason) or unavailable. */
    verify(id: string): Promise<VerifyResult>;
    /** The connection's history, newest first; pass `next_cursor` back as `cursor`. */
    events(id: string, page?: { limit?: number; cursor?: string }): Promise<ConnectionEventList>;
  };
  readonly integrations: {
    list(): Promise<Integration[]>;
    put(key: string, table: Record<string, unknown>): Promise<Integration>;
    delete(key: string): Promise<void>;
  };
  readonly providers: {
    list(): Promise<Provider[]>;
  };
  readonly agentTokens: {
    /** Mints a token for an agent acting for one end user (shown once). */
    create(body: CreateAgentToken): Promise<AgentTokenCreated>;
    /** The end user's tokens, newest first (never the tokens themselves). */
    list(endUserId: string): Promise<AgentToken[]>;
    /** Revokes a token at once, on every instance. */
    revoke(id: string): Promise<void>;
  };
  readonly webhookDeliveries: {
    list(filter?: WebhookDeliveryFilter): Promise<WebhookDelivery[]>;
    get(id: string): Promise<WebhookDelivery>;
    redeliver(id: string): Promise<void>;
  };

  /**
   * MCP clients asking to act for one of the app's users: the app's sign-in page receives
   * `tether_request`, shows what `get` says, then approves or denies, and sends the browser
   * to the `redirect_to` it gets back.
   */
  readonly agentAuthorizations: {
    get(request: string): Promise<AgentAuthorizationRequest>;
    approve(request: string, body: ApproveAgentAuthorization): Promise<AgentAuthorizationRedirect>;
    deny(request: string): Promise<AgentAuthorizationRedirect>;
  };

  private readonly base: URL;
  private readonly apiKey: string;
  private readonly fetcher: typeof fetch;

  constructor(options: TetherOptions) {
    this.base = new URL(options.baseUrl.endsWith("/") ? options.baseUrl : `${options.baseUrl}/`);
    this.apiKey = options.apiKey;
    this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    const id = (value: string) => encodeURIComponent(value);
    this.connectSessions = {
      create: (body) => this.json("POST", "v1/connect/sessions", { body }),
    };
    this.connections = {
      list: async (filter) =>
        (await this.json<{ connections: Connection[] }>("GET", "v1/connections", { query: { ...filter } }))
          .connections,
      get: (cid) => this.json("GET", `v1/connections/${id(cid)}`),
      credentials: (cid, options) =>
        this.json("GET", `v1/connections/${id(cid)}/credentials`, {
          query: options?.forceRefresh ? { force_refresh: true } : {},
        }),
      import: (body) => this.json("POST", "v1/connections", { body }),
      delete: async (cid) => {
        await this.send("DELETE", `v1/connections/${id(cid)}`);
      },
      verify: (cid) => this.json("POST", `v1/connections/${id(cid)}/verify`),
      events: (cid, page) => this.json("GET", `v1/connections/${id(cid)}/events`, { query: { ...page } }),
    };
    this.integrations = {
      list: async () =>
        (await this.json<{ integrations: Integration[] }>("GET", "v1/integrations")).integrations,
      put: (key, table) => this.json("PUT", `v1/integrations/${id(key)}`, { body: table }),
      delete: async (key) => {
        await this.send("DELETE", `v1/integrations/${id(key)}`);
      },
    };
    this.providers = {
      list: async () => (await this.json<{ providers: Provider[] }>("GET", "v1/providers")).providers,
    };
    this.agentTokens = {
      create: (body) => this.json("POST", "v1/agent-tokens", { body }),
      list: async (endUserId) =>
        (await this.json<{ agent_tokens: AgentToken[] }>("GET", "v1/agent-tokens", { query: { end_user_id: endUserId } }))
          .agent_tokens,
      revoke: async (tid) => {
        await this.send("DELETE", `v1/agent-tokens/${id(tid)}`);
      },
    };
    this.webhookDeliveries = {
      list: async (filter) =>
        (await this.json<{ deliveries: WebhookDelivery[] }>("GET", "v1/webhooks/deliveries", { query: { ...filter } }))
          .deliveries,
      get: (did) => this.json("GET", `v1/webhooks/deliveries/${id(did)}`),
      redeliver: async (did) => {
        await this.send("POST", `v1/webhooks/deliveries/${id(did)}/redeliver`);
      },
    };
    this.agentAuthorizations = {
      get: (request) => this.json("GET", `v1/agent-authorizations/${id(request)}`),
      approve: (request, body) => this.json("POST", `v1/agent-authorizations/${id(request)}/approve`, { body }),
      deny: (request) => this.json("POST", `v1/agent-authorizations/${id(request)}/deny`),
    };
  }

  /**
   * Calls the provider through Tether's proxy as `connectionId`: Tether adds the provider's
   * auth, refreshes when needed, and streams the answer back. Paths are relative to the
   * provider's API base URL: `tether.proxy(id).get("/v1/deals")`. Provider errors come back
   * as the provider's own responses; Tether's own refusals (an unknown connection, one that
   * needs reauthorization) throw `TetherError`.
   */
  proxy(connectionId: string): Proxy {
    return new Proxy(this, connectionId);
  }

  /** @internal */
  async send(method: string, path: string, options: { query?: Query; body?: unknown; headers?: HeadersInit; raw?: BodyInit | null } = {}): Promise<Response> {
    const url = new URL(path, this.base);
    for (const [name, value] of Object.entries(options.query ?? {})) {
      if (value !== undefined) url.searchParams.set(name, String(value));
    }
    const headers = new Headers(options.headers);
    headers.set("authorization", `Bearer ${this.apiKey}`);
    let body: BodyInit | null | undefined = options.raw;
    if (options.body !== undefined) {
      headers.set("content-type", "application/json");
      body = JSON.stringify(options.body);
    }
    const response = await this.fetcher(url, { method, headers, body, redirect: "manual" });
    if (!response.ok && !isProxyPath(path)) throw await TetherError.from(response);
    return response;
  }

  private async json<T>(method: string, path: string, options: { query?: Query; body?: unknown } = {}): Promise<T> {
    const response = await this.send(method, path, options);
    return (await response.json()) as T;
  }
}

function isProxyPath(path: string): boolean {
  return path.startsWith("v1/proxy/");
}

/** Requests to one connection's provider, through Tether. */
export class Proxy {
  constructor(
    private readonly tether: Tether,
    private readonly connectionId: string,
  ) {}

  /** Any method. `path` is relative to the provider's base URL; a query string is kept. */
  async request(method: string, path: string, init: { headers?: HeadersInit; body?: BodyInit | null; json?: unknown } = {}): Promise<Response> {
    const relative = path.replace(/^\/+/, "");
    const target = `v1/proxy/${encodeURIComponent(this.connectionId)}/${relative}`;
    const headers = new Headers(init.headers);
    let raw = init.body ?? null;
    if (init.json !== undefined) {
      headers.set("content-type", "application/json");
      raw = JSON.stringify(init.json);
    }
    const response = await this.tether.send(method, target, { headers, raw });
    // Tether's own refusals are its problems; the provider's errors pass as they are.
    if (!response.ok && (await isTetherProblem(response))) throw await TetherError.from(response);
    return response;
  }

  get(path: string, init?: { headers?: HeadersInit }): Promise<Response> {
    return this.request("GET", path, init);
  }

  post(path: string, json?: unknown, init?: { headers?: HeadersInit }): Promise<Response> {
    return this.request("POST", path, { ...init, json });
  }

  put(path: string, json?: unknown, init?: { headers?: HeadersInit }): Promise<Response> {
    return this.request("PUT", path, { ...init, json });
  }

  patch(path: string, json?: unknown, init?: { headers?: HeadersInit }): Promise<Response> {
    return this.request("PATCH", path, { ...init, json });
  }

  delete(path: string, init?: { headers?: HeadersInit }): Promise<Response> {
    return this.request("DELETE", path, init);
  }
}

/** Whether an error response came from Tether itself rather than the provider (which may
 * send problem+json too): Tether's problem types live under its own namespace. */
async function isTetherProblem(response: Response): Promise<boolean> {
  const type = response.headers.get("content-type") ?? "";
  if (!type.startsWith("application/problem+json")) return false;
  try {
    const problem = (await response.clone().json()) as { type?: unknown };
    return typeof problem.type === "string" && problem.type.startsWith(TETHER_PROBLEMS);
  } catch {
    return false;
  }
}

/** The namespace of Tether's problem `type` URIs. */
const TETHER_PROBLEMS = "https://tether.dev/problems/";
