// The feedback events this library sends: the fields of flywheel's contracts (schemas/events.py) a browser fills.
// test/types/contract.ts proves at build time that each of them is the contract's event of the same type.

/** Fields every event sent from the page carries. (A type, not an interface: only a type's fields can satisfy the
 * contract types' index signature.) */
export type Envelope = {
  event_id: string;
  ts: string;
  interaction_id: string;
  /** Issued by the product's server with the answer; the gateway checks and removes it. */
  interaction_token: string;
};

export type Thumbs = "up" | "down";

export type Signal =
  | { type: "copy"; chars: number }
  | { type: "edit"; text: string }
  | { type: "dwell"; dwell_ms: number }
  | { type: "abandon"; reason: string }
  | { type: "accept" }
  | { type: "retry" }
  | { type: "rating"; thumbs: Thumbs; comment?: string }
  | { type: "rating"; score: number; comment?: string };

export type FeedbackEvent = Envelope & Signal;

/** A thumbs or 1-5 rating, with an optional comment. */
export type Rating = { thumbs: Thumbs; comment?: string } | { score: number; comment?: string };
