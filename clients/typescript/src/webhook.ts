// Verifying `Tether-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">` with Web Crypto
// (Node 18+ and browsers alike), in constant time, rejecting old timestamps.

export interface VerifyOptions {
  /** How old (or how far in the future) a signature may be; 300 s by default. */
  toleranceSeconds?: number;
  /** The current time in unix seconds (for tests). */
  now?: number;
}

/**
 * Whether `rawBody` (exactly as received, before any JSON parsing) was signed by Tether with
 * `secret` within the tolerance. Returns false for a missing, malformed, stale or wrong
 * signature; never throws for bad input.
 */
export async function verifyWebhook(
  secret: string,
  signatureHeader: string | null | undefined,
  rawBody: string | Uint8Array,
  options: VerifyOptions = {},
): Promise<boolean> {
  if (!secret || !signatureHeader) return false;
  const parts = new Map<string, string[]>();
  for (const item of signatureHeader.split(",")) {
    const at = item.indexOf("=");
    if (at <= 0) continue;
    const key = item.slice(0, at).trim();
    const list = parts.get(key) ?? [];
    list.push(item.slice(at + 1).trim());
    parts.set(key, list);
  }
  const timestamp = parts.get("t")?.[0];
  const candidates = parts.get("v1") ?? [];
  if (!timestamp || !/^\d{1,12}$/.test(timestamp) || candidates.length === 0) return false;
  const tolerance = options.toleranceSeconds ?? 300;
  const now = options.now ?? Math.floor(Date.now() / 1000);
  if (Math.abs(now - Number(timestamp)) > tolerance) return false;

  const encoder = new TextEncoder();
  const body = typeof rawBody === "string" ? encoder.encode(rawBody) : rawBody;
  const signed = new Uint8Array(timestamp.length + 1 + body.length);
  signed.set(encoder.encode(`${timestamp}.`), 0);
  signed.set(body, timestamp.length + 1);
  const key = await crypto.subtle.importKey(
    "raw",
    encoder.encode(secret),
    { name: "HMAC", hash: "SHA-256" },
    false,
    ["sign"],
  );
  const expected = new Uint8Array(await crypto.subtle.sign("HMAC", key, signed));
  return candidates.some((candidate) => equalHex(expected, candidate));
}

/** Constant-time comparison of bytes with their hex form. */
function equalHex(expected: Uint8Array, hex: string): boolean {
  if (hex.length !== expected.length * 2 || !/^[0-9a-fA-F]*$/.test(hex)) return false;
  let difference = 0;
  for (let i = 0; i < expected.length; i++) {
    difference |= expected[i] ^ parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  }
  return difference === 0;
}
