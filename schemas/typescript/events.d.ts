export type Event = Interaction | Rating | Edit | Retry | Copy | Accept | Abandon | Followup | Correction | Dwell;
export type JsonValue = unknown;

/**
 * What the model served: one input, one output.
 */
export interface Interaction {
  app: string;
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  input: ModelInput;
  interaction_id: string;
  latency_ms?: number | null;
  metadata?: {
    [k: string]: JsonValue;
  };
  model: ModelRef;
  output: string;
  schema_version?: number;
  session_id: string;
  task: string;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "interaction";
  /**
   * A pseudonymous user id, never an e-mail or a name.
   */
  user_id: string;
  [k: string]: JsonValue;
}
/**
 * What the model was given: a plain prompt, or chat messages (at least one of them).
 */
export interface ModelInput {
  messages?: ChatMessage[] | null;
  prompt?: string | null;
  [k: string]: JsonValue;
}
export interface ChatMessage {
  content: string;
  role: "system" | "user" | "assistant" | "tool";
  [k: string]: JsonValue;
}
/**
 * Which model produced an output.
 */
export interface ModelRef {
  id: string;
  provider?: string | null;
  version: string;
  [k: string]: JsonValue;
}
/**
 * An explicit rating: thumbs up/down or a 1-5 score, with an optional comment.
 */
export interface Rating {
  comment?: string | null;
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  score?: number | null;
  thumbs?: ("up" | "down") | null;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "rating";
  [k: string]: JsonValue;
}
/**
 * The user edited the output; `text` is what they kept.
 */
export interface Edit {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  text: string;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "edit";
  [k: string]: JsonValue;
}
/**
 * The user asked for a regeneration; the new output is its own interaction.
 */
export interface Retry {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  new_interaction_id?: string | null;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "retry";
  [k: string]: JsonValue;
}
/**
 * The user copied (part of) the output.
 */
export interface Copy {
  chars?: number | null;
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "copy";
  [k: string]: JsonValue;
}
/**
 * The user accepted the output (applied a suggestion, sent a drafted reply, ...).
 */
export interface Accept {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "accept";
  [k: string]: JsonValue;
}
/**
 * The user explicitly left without using the output.
 */
export interface Abandon {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  reason?: string | null;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "abandon";
  [k: string]: JsonValue;
}
/**
 * The user's next prompt; a close paraphrase of the original means a rephrase.
 */
export interface Followup {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  next_interaction_id?: string | null;
  prompt: string;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "followup";
  [k: string]: JsonValue;
}
/**
 * The user stated the right answer.
 */
export interface Correction {
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  text: string;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "correction";
  [k: string]: JsonValue;
}
/**
 * Time the user spent with the output.
 */
export interface Dwell {
  dwell_ms: number;
  /**
   * Unique id of this event; readers deduplicate by it.
   */
  event_id: string;
  /**
   * The interaction this feedback is about.
   */
  interaction_id: string;
  schema_version?: number;
  /**
   * When it happened, ISO 8601 with a time zone.
   */
  ts: string;
  type: "dwell";
  [k: string]: JsonValue;
}
