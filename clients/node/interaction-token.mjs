// Interaction tokens for flywheel's HTTP gateway, made on the product's server (Node.js 18+, no dependencies).
//
// When your server serves an interaction, it makes a token for it and hands it to the page with the answer; the
// page puts it in each feedback event about that interaction (`interaction_token`), sent with a publishable
// browser key. The gateway refuses feedback whose token is forged, expired or made for another interaction.
//
//   import { interactionToken } from "./interaction-token.mjs";
//   const token = interactionToken(process.env.FLYWHEEL_GATEWAY_TOKEN_SECRET, interactionId, 3600);
//
// The algorithm, the same in every language (flywheel_feedback.client.interaction_token in Python):
//   expiry  = now in Unix seconds + ttl (an integer)
//   payload = "v1." + expiry + "." + base64url(UTF-8 interaction id)        (base64url without padding)
//   token   = payload + "." + base64url(HMAC-SHA256(key = UTF-8 secret, message = payload))
import { createHmac } from "node:crypto";

/**
 * @param {string} secret the gateway's token secret (FLYWHEEL_GATEWAY_TOKEN_SECRET, or the browser key's own)
 * @param {string} interactionId the interaction the browser may send feedback about
 * @param {number} ttlSeconds how long the token is valid
 * @param {number} [nowSeconds] the current Unix time (default: the clock)
 * @returns {string}
 */
export function interactionToken(secret, interactionId, ttlSeconds, nowSeconds = Date.now() / 1000) {
  if (!secret) throw new Error("expected the gateway's token secret, got an empty one");
  if (!interactionId) throw new Error("expected an interaction id, got an empty one");
  if (!(ttlSeconds > 0)) throw new Error(`expected a positive ttl, got ${ttlSeconds}`);
  const expiry = Math.floor(nowSeconds) + Math.ceil(ttlSeconds);
  const payload = `v1.${expiry}.${Buffer.from(interactionId, "utf8").toString("base64url")}`;
  const mac = createHmac("sha256", Buffer.from(secret, "utf8")).update(payload, "ascii").digest("base64url");
  return `${payload}.${mac}`;
}
