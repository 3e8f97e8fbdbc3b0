// The shapes of Tether's HTTP API, as the server sends and accepts them (snake_case, as on
// the wire). `test/openapi.test.mjs` checks them against the server's OpenAPI document.

/** An end user of the app, who connects their own CRM account. */
export interface EndUser {
  id: string;
  email?: string | null;
  display_name?: string | null;
}

export interface CreateConnectSession {
  end_user: EndUser;
  /** Integration keys the session may connect; all when absent. */
  integrations?: string[];
  /** Where the browser goes after connecting; must be on the allowed origins. */
  return_url?: string;
  /**
   * Repair this connection (one of this end user's): finishing the session replaces its
   * credentials, same id, only if the same provider account signs in.
   */
  reconnect_connection_id?: string;
}

export interface ConnectSession {
  token: string;
  connect_url: string;
  expires_at: string;
}

export type ConnectionStatus = "active" | "needs_reauth" | "revoked";

export interface Connection {
  id: string;
  integration: string;
  end_user: EndUser;
  status: ConnectionStatus;
  expires_at: string | null;
  metadata: Record<string, unknown>;
  last_error: string | null;
  /** Whose credentials these are, as the provider said; absent until known. */
  account?: ConnectionAccount | null;
  /** When the last health check ran. */
  last_checked_at?: string | null;
  /** What it found: `ok`, or `refused: ...` / `unavailable: ...`. */
  last_check?: string | null;
  /** When the grant ends whatever is done (a fixed refresh-token lifetime). */
  grant_expires_at?: string | null;
  created_at: string;
  updated_at: string;
}

/** The provider's account a connection belongs to; each part when the provider names it. */
export interface ConnectionAccount {
  user_id?: string | null;
  organization_id?: string | null;
  label?: string | null;
}

/** What `POST /v1/connections/{id}/verify` found. */
export interface VerifyResult {
  connection_id: string;
  /** `unavailable`: the provider could not answer; nothing was concluded. */
  outcome: "ok" | "refused" | "unavailable";
  reason?: string | null;
  /** The connection's status after the check. */
  status: ConnectionStatus;
  account?: ConnectionAccount | null;
  consecutive_failures: number;
  checked_at: string;
}

export interface ConnectionFilter {
  end_user_id?: string;
  integration?: string;
  status?: ConnectionStatus;
  limit?: number;
}

export interface Credentials {
  connection_id: string;
  integration: string;
  auth_mode: string;
  base_url: string;
  /** Headers to send to the provider yourself, instead of using the proxy. */
  headers: Record<string, string>;
  /** Query parameters to add to every call (Bitrix24's `auth`); usually empty. */
  query: Record<string, string>;
  expires_at: string | null;
  /** OAuth connections only. */
  access_token?: string;
  token_type?: string;
}

export interface ImportConnection {
  integration: string;
  end_user: EndUser;
  credentials: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

/** An integration's OAuth client, without its secret. */
export interface IntegrationOAuth2 {
  client_id: string;
  authorization_url: string;
  token_url: string;
  revocation_url?: string | null;
  scopes: string[];
  pkce: boolean;
}

export interface Integration {
  key: string;
  provider: string;
  display_name: string;
  auth_mode: string;
  /** The names of its settings (never their values). */
  settings: string[];
  managed_by: "config" | "api";
  /** OAuth integrations only. */
  oauth2?: IntegrationOAuth2;
}

/** Something the operator configures or the end user enters for a provider. */
export interface ProviderItem {
  name: string;
  label: string;
  required: boolean;
  secret: boolean;
  default?: string;
  pattern?: string;
}

/** A field of the Connect page's credential form. */
export interface ProviderField {
  name: string;
  label: string;
  help: string;
  secret: boolean;
  required: boolean;
  pattern?: string | null;
}

export interface Provider {
  id: string;
  display_name: string;
  auth_mode: string;
  description: string;
  /** The credential form's fields (non-OAuth modes). */
  fields: ProviderField[];
  /** What the operator may or must configure. */
  settings: { name: string; label: string; required: boolean }[];
  /** What the operator puts in the integration (client, settings). */
  operator: ProviderItem[];
  /** What the end user enters on the Connect page (before the redirect, for OAuth). */
  end_user: ProviderItem[];
  /** The provider quirks Tether handles, in words. */
  quirks: string[];
  /** Hosts a URL from a connection value may name (empty: fixed hosts only). */
  allowed_hosts: string[];
  /** The public documentation the provider file's facts come from. */
  docs_url: string | null;
  mark: { text: string; color: string };
}

/** One entry of a connection's history (`GET /v1/connections/{id}/events`). */
export interface ConnectionEvent {
  type:
    | "created"
    | "reconnected"
    | "refreshed"
    | "refresh_failed"
    | "needs_reauth"
    | "recovered"
    | "check_failed"
    | "expiring"
    | "revocation"
    | "deleted"
    | "webhook_delivered"
    | "webhook_failed";
  connection_id: string;
  integration: string;
  detail: string | null;
  reference: string | null;
  webhook_event_id: string | null;
  occurred_at: string;
}

/** A page of a connection's history, newest first. */
export interface ConnectionEventList {
  events: ConnectionEvent[];
  next_cursor: string | null;
}

export type WebhookDeliveryStatus = "pending" | "delivered" | "failed";

export interface WebhookDelivery {
  id: string;
  type: string;
  connection_id: string;
  status: WebhookDeliveryStatus;
  attempts: number;
  next_attempt_at: string | null;
  last_attempt_at: string | null;
  last_status_code: number | null;
  last_error: string | null;
  delivered_at: string | null;
  created_at: string;
  payload: WebhookEvent;
}

export interface WebhookDeliveryFilter {
  connection_id?: string;
  status?: WebhookDeliveryStatus;
  limit?: number;
}

/** The body Tether POSTs to the app's webhook URL. */
export interface WebhookEvent {
  id: string;
  type:
    | "connection.created"
    | "connection.refreshed"
    | "connection.refresh_failed"
    | "connection.deleted";
  connection_id: string;
  integration: string;
  end_user_id: string;
  occurred_at: string;
  [other: string]: unknown;
}

/** An RFC 9457 problem, as every API error is sent. */
export interface Problem {
  type: string;
  title: string;
  status: number;
  detail: string;
  code: string;
}

/** What an MCP client asks for (`GET /v1/agent-authorizations/{request}`). */
export interface AgentAuthorizationRequest {
  /** The client's own name for itself (its claim, not verified). */
  client_name?: string | null;
  /** A registered id, or the URL of the client's metadata document. */
  client_id: string;
  /** Where the browser returns after the decision: it says who gets the access. */
  redirect_host: string;
  /** Space-separated: `mcp:read`, `mcp:write`. */
  scope: string;
  /** The MCP server the access is for. */
  resource: string;
  expires_at: string;
}

/** The app's approval of an MCP client for one of its users. */
export interface ApproveAgentAuthorization {
  end_user_id: string;
  /** `write` only when the client asked for `mcp:write`. */
  access: "read" | "write";
  /** Integration keys the client may reach; every integration when absent. */
  integrations?: string[] | null;
}

/** Where to send the end user's browser after a decision. */
export interface AgentAuthorizationRedirect {
  redirect_to: string;
}

/** A token for an AI agent acting for one end user on the MCP server at `/mcp`. */
export interface CreateAgentToken {
  end_user_id: string;
  /** `read`: GET and HEAD only; `write`: any method. */
  access: "read" | "write";
  /** Integration keys the agent may use; all when absent. */
  integrations?: string[] | null;
  /** Lifetime in seconds (60 to the server's maximum); one hour when absent. */
  expires_in?: number | null;
}

export interface AgentTokenCreated {
  id: string;
  /** Shown once: hand it to the agent as `Authorization: Bearer ...` on `/mcp`. */
  token: string;
  expires_at: string;
}

/** An agent token as listed (never the token itself). */
export interface AgentToken {
  id: string;
  end_user_id: string;
  access: string;
  integrations?: string[] | null;
  created_at: string;
  expires_at: string;
  revoked_at?: string | null;
  /** `active`, `expired` or `revoked`. */
  status: string;
  mcp_client_id?: string | null;
}
