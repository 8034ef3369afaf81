// The feedback events this library sends: the fields of flywheel's contracts (schemas/events.py) a browser fills.

/** Fields every event sent from the page carries. */
export interface Envelope {
  event_id: string;
  ts: string;
  interaction_id: string;
  /** Issued by the product's server with the answer; the gateway checks and removes it. */
  interaction_token: string;
}

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
