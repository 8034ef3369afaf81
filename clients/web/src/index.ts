// flywheel's browser library: implicit feedback on a model's output, sent to flywheel's HTTP gateway.
//
//   import { configure, observe } from "@flywheel-feedback/web";
//   configure({ endpoint: "https://flywheel.example.com", key: "pk_live_..." });
//   observe(document.querySelector("#answer"), { interactionId, token });

import type { ObserveOptions, Observation } from "./observe.js";
import { watch } from "./observe.js";
import type { SenderOptions } from "./sender.js";
import { Sender } from "./sender.js";

export type { FeedbackEvent, Rating, Signal, Thumbs } from "./events.js";
export type { ObserveOptions, Observation } from "./observe.js";
export type { SenderOptions } from "./sender.js";
export { DwellClock } from "./dwell.js";
export { newEventId } from "./ids.js";
export { Sender } from "./sender.js";

export interface Client {
  readonly sender: Sender;
  observe(element: Element, options: ObserveOptions): Observation;
  /** Send what is queued now. */
  flush(): void;
}

/** A client for one gateway and browser key; it follows the page's visibility and sends before it goes away. */
export function createClient(options: SenderOptions): Client {
  const sender = new Sender(options);
  const watching = new Set<Observation>();
  const away = (reason: "page_hidden" | "page_closed"): void => {
    for (const o of watching) o.hidden(reason);
    sender.flush();
  };
  // pagehide comes first when the page closes (then visibilitychange); a tab switch has only the latter
  addEventListener("pagehide", () => away("page_closed"));
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "hidden") away("page_hidden");
    else for (const o of watching) o.shown();
  });
  addEventListener("online", () => sender.retryNow());
  return {
    sender,
    observe(element, observeOptions) {
      const observation = watch(element, observeOptions, sender);
      const end = observation.end;
      watching.add(observation);
      return { ...observation, end: () => (watching.delete(observation), end()) };
    },
    flush: () => sender.flush(),
  };
}

let defaultClient: Client | null = null;

/** Set the gateway and browser key that observe() sends to. */
export function configure(options: SenderOptions): Client {
  defaultClient = createClient(options);
  return defaultClient;
}

/** Watch the element that shows a model's output (see ObserveOptions for the elements it can be told of). */
export function observe(element: Element, options: ObserveOptions): Observation {
  if (defaultClient === null) throw new Error("flywheel: call configure({ endpoint, key }) before observe()");
  return defaultClient.observe(element, options);
}
