// Watches the element that shows one model output and turns what the user does with it into feedback events.
// Only the events' own fields leave the page: counts, durations, the text kept in an editable seeded with the
// output, and the interaction's id and token; never the page's other text.

import { DwellClock } from "./dwell.js";
import type { Rating, Signal } from "./events.js";
import { newEventId } from "./ids.js";
import type { Sender } from "./sender.js";

export interface ObserveOptions {
  interactionId: string;
  /** The interaction token the product's server made for this interaction and sent with the answer. */
  token: string;
  /** Buttons that copy the output: a click is a copy of the whole output. */
  copyButtons?: Element[];
  /** An input, textarea or contenteditable seeded with the output (a drafted reply). */
  editable?: HTMLElement;
  /** Buttons that send the editable (its form's submit counts too). */
  submitButtons?: Element[];
  acceptButtons?: Element[];
  retryButtons?: Element[];
  /** A container whose descendants with data-flywheel-rating="up|down|1..5" rate the output when clicked. */
  rating?: Element;
}

export interface Observation {
  readonly interactionId: string;
  copied(chars?: number): void;
  accepted(): void;
  retried(): void;
  rate(rating: Rating): void;
  /** The page is going away or hidden: report the time seen and, with nothing positive, the abandonment. */
  hidden(reason: "page_hidden" | "page_closed"): void;
  shown(): void;
  /** Report the time seen and stop watching (the output is removed from the page). */
  end(): void;
}

const MIN_DWELL_STEP_MS = 50;

export function watch(element: Element, options: ObserveOptions, sender: Sender): Observation {
  const { interactionId, token } = options;
  const doc = element.ownerDocument;
  const clock = new DwellClock(() => performance.now(), doc.visibilityState === "visible");
  const stops: (() => void)[] = [];
  let positive = false;
  let abandoned = false;
  let dwellSent = 0;
  let ended = false;

  const emit = (signal: Signal): void => {
    if (ended) return;
    sender.send({ event_id: newEventId(), ts: new Date().toISOString(), interaction_id: interactionId,
      interaction_token: token, ...signal });
  };
  const on = (target: EventTarget, type: string, run: (event: Event) => void): void => {
    target.addEventListener(type, run, true);
    stops.push(() => target.removeEventListener(type, run, true));
  };
  const reportDwell = (): void => {
    const ms = clock.ms();
    if (ms - dwellSent >= MIN_DWELL_STEP_MS) {
      dwellSent = ms;
      emit({ type: "dwell", dwell_ms: ms }); // the total so far: readers take the largest
    }
  };

  const observation: Observation = {
    interactionId,
    copied(chars = (element.textContent ?? "").length) {
      positive = true;
      emit({ type: "copy", chars });
    },
    accepted() {
      positive = true;
      emit({ type: "accept" });
    },
    retried() {
      emit({ type: "retry" });
    },
    rate(rating) {
      if ("thumbs" in rating) positive ||= rating.thumbs === "up";
      else positive ||= rating.score >= 4;
      emit({ type: "rating", ...rating });
    },
    hidden(reason) {
      clock.setForeground(false);
      reportDwell();
      if (!positive && !abandoned) {
        abandoned = true;
        emit({ type: "abandon", reason });
      }
    },
    shown() {
      clock.setForeground(true);
    },
    end() {
      if (ended) return;
      clock.setOnScreen(false);
      reportDwell();
      ended = true;
      for (const stop of stops) stop();
    },
  };

  // copies of a selection that reaches into the output (or into the editable)
  on(doc, "copy", () => {
    const chars = selectedChars(element, options.editable);
    if (chars > 0) observation.copied(chars);
  });
  for (const button of options.copyButtons ?? []) on(button, "click", () => observation.copied());
  for (const button of options.acceptButtons ?? []) on(button, "click", () => observation.accepted());
  for (const button of options.retryButtons ?? []) on(button, "click", () => observation.retried());
  if (options.rating) {
    on(options.rating, "click", (event) => {
      const value = (event.target as Element).closest?.("[data-flywheel-rating]")?.getAttribute("data-flywheel-rating");
      if (value === "up" || value === "down") observation.rate({ thumbs: value });
      else if (value && /^[1-5]$/.test(value)) observation.rate({ score: Number(value) });
    });
  }
  if (options.editable) watchEditable(options.editable, options.submitButtons ?? [], on, emit, () => (positive = true));

  const view = doc.defaultView;
  if (view && "IntersectionObserver" in view) {
    const seen = new view.IntersectionObserver(
      (entries) => {
        for (const entry of entries) {
          const half = entry.intersectionRatio >= 0.5;
          // an output taller than the viewport counts as seen when it fills half of it
          const fills = (entry.rootBounds?.height ?? Infinity) / 2 <= entry.intersectionRect.height;
          clock.setOnScreen(entry.isIntersecting && (half || fills));
        }
      },
      { threshold: [0, 0.25, 0.5, 0.75, 1] },
    );
    seen.observe(element);
    stops.push(() => seen.disconnect());
  }
  return observation;
}

function watchEditable(
  editable: HTMLElement,
  submitButtons: Element[],
  on: (target: EventTarget, type: string, run: (event: Event) => void) => void,
  emit: (signal: Signal) => void,
  used: () => void,
): void {
  const text = (): string =>
    editable instanceof HTMLInputElement || editable instanceof HTMLTextAreaElement
      ? editable.value
      : (editable.textContent ?? "");
  let kept = text(); // the seed: the output as drafted
  let sent = false;
  const use = (sending: boolean): void => {
    const now = text();
    if (now !== kept) {
      kept = now;
      sent = true;
      used();
      emit({ type: "edit", text: now });
    } else if (sending && !sent) {
      sent = true;
      used();
      emit({ type: "accept" }); // sent as drafted
    }
  };
  on(editable, "blur", () => use(false));
  for (const button of submitButtons) on(button, "click", () => use(true));
  const form = editable.closest("form");
  if (form) on(form, "submit", () => use(true));
}

/** Characters of the current selection inside `element`, or inside the focused `editable`. */
function selectedChars(element: Element, editable: HTMLElement | undefined): number {
  const doc = element.ownerDocument;
  const active = doc.activeElement;
  if (editable && active === editable && (active instanceof HTMLTextAreaElement || active instanceof HTMLInputElement)) {
    return Math.abs((active.selectionEnd ?? 0) - (active.selectionStart ?? 0));
  }
  const selection = doc.getSelection();
  let chars = 0;
  for (let i = 0; selection && i < selection.rangeCount; i++) {
    const range = selection.getRangeAt(i);
    if (!range.intersectsNode(element)) continue;
    const inside = doc.createRange();
    inside.selectNodeContents(element);
    if (range.compareBoundaryPoints(Range.START_TO_START, inside) > 0) {
      inside.setStart(range.startContainer, range.startOffset);
    }
    if (range.compareBoundaryPoints(Range.END_TO_END, inside) < 0) inside.setEnd(range.endContainer, range.endOffset);
    chars += inside.toString().length;
  }
  return chars;
}
