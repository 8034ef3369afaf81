// Proves at compile time that every event the browser library sends (src/events.ts) is an event of flywheel's
// contract (schemas/typescript/events.d.ts, generated from the pydantic models in schemas/events.py): `tsc -p
// test/types` fails when they drift. The library keeps its own, narrower types so that its build needs nothing
// outside clients/web and its declarations stand alone.

import type { Event } from "../../../../schemas/typescript/events.js";
import type { FeedbackEvent } from "../../src/events.js";

type Name = FeedbackEvent["type"];
/** What the library sends as the event `T` (a union for a rating: thumbs or a score). */
type Sent<T extends Name> = Extract<FeedbackEvent, { type: T }>;
/** The contract's event `T` (never when the contract has no such event). */
type Contract<T extends Name> = Extract<Event, { type: T }>;
/** The fields a contract type declares, without its index signature (which would take any misspelt field). */
type Declared<E> = keyof { [K in keyof E as string extends K ? never : number extends K ? never : K]: E[K] };
/** Fields of each variant the library sends that the contract does not declare; the interaction token is the
 * gateway's (it checks and removes it). */
type Undeclared<S, C> = S extends unknown ? Exclude<keyof S, Declared<C> | "interaction_token"> : never;
/** true when every variant of `T` the library sends is the contract's `T` and declares no other field. */
type Agrees<T extends Name> = [Sent<T>] extends [Contract<T>]
  ? [Undeclared<Sent<T>, Contract<T>>] extends [never]
    ? true
    : false
  : false;

// One entry per event the library sends: a new one must be added here (a missing key fails), and an entry that
// does not agree is `false`, so its `true` fails with the event's name in tsc's message.
export const agreement: { [T in Name]: Agrees<T> } = {
  copy: true,
  edit: true,
  dwell: true,
  abandon: true,
  accept: true,
  retry: true,
  rating: true,
};
