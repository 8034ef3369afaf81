// The observation under node, with small hand-made stand-ins for the few DOM objects watch() touches (event
// targets, a document with a selection over a flat text, a textarea, a form, an IntersectionObserver) and a
// sender that records: copy counting, edit versus accept of a draft, abandon sent once, dwell, end.
import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";
import { watch } from "../../build/observe.js";

class Target {
  listeners = new Map();
  addEventListener(type, run) {
    if (!this.listeners.has(type)) this.listeners.set(type, new Set());
    this.listeners.get(type).add(run);
  }
  removeEventListener(type, run) {
    this.listeners.get(type)?.delete(run);
  }
  dispatch(type, event = {}) {
    for (const run of this.listeners.get(type) ?? []) run({ type, target: this, ...event });
  }
  get listening() {
    let n = 0;
    for (const runs of this.listeners.values()) n += runs.size;
    return n;
  }
}

/** A page whose text is one string: nodes are spans of it, range boundaries offsets into it. */
class Page extends Target {
  visibilityState = "visible";
  activeElement = null;
  selection = [];
  defaultView = null;
  constructor(text) {
    super();
    this.text = text;
    this.root = { start: 0, end: text.length }; // the one container that range boundaries point into
  }
  getSelection() {
    const ranges = this.selection;
    return { rangeCount: ranges.length, getRangeAt: (i) => ranges[i] };
  }
  createRange() {
    return new FakeRange(this, 0, 0);
  }
  select(start, end) {
    this.selection = [new FakeRange(this, start, end)];
  }
}

class FakeRange {
  static START_TO_START = 0;
  static END_TO_END = 2;
  constructor(page, start, end) {
    this.page = page;
    this.start = start;
    this.end = end;
  }
  get startContainer() {
    return this.page.root;
  }
  get endContainer() {
    return this.page.root;
  }
  get startOffset() {
    return this.start;
  }
  get endOffset() {
    return this.end;
  }
  intersectsNode(node) {
    return this.start < node.end && this.end > node.start;
  }
  selectNodeContents(node) {
    this.start = node.start;
    this.end = node.end;
  }
  setStart(container, offset) {
    this.start = container.start + offset;
  }
  setEnd(container, offset) {
    this.end = container.start + offset;
  }
  compareBoundaryPoints(how, other) {
    const [mine, theirs] = how === FakeRange.START_TO_START ? [this.start, other.start] : [this.end, other.end];
    return Math.sign(mine - theirs);
  }
  toString() {
    return this.page.text.slice(this.start, this.end);
  }
}

class Element extends Target {
  constructor(page, { start = 0, end = 0, form = null, rating = null } = {}) {
    super();
    this.ownerDocument = page;
    this.start = start;
    this.end = end;
    this.form = form;
    this.rating = rating;
  }
  get textContent() {
    return this.ownerDocument.text.slice(this.start, this.end);
  }
  closest(selector) {
    if (selector === "form") return this.form;
    if (selector === "[data-flywheel-rating]") return this.rating === null ? null : this;
    return null;
  }
  getAttribute(name) {
    return name === "data-flywheel-rating" ? this.rating : null;
  }
}

class TextArea extends Element {
  value = "";
  selectionStart = 0;
  selectionEnd = 0;
}
class Input extends Element {}

globalThis.HTMLTextAreaElement = TextArea;
globalThis.HTMLInputElement = Input;
globalThis.Range = FakeRange;
let now = 0;
Object.defineProperty(globalThis, "performance", { value: { now: () => now }, configurable: true });

const OUTPUT = "Open Settings, then Reset password.";
const BEFORE = "Question: how do I reset it? ";
const PAGE = `${BEFORE}${OUTPUT} Was this helpful?`;

let page;
let output;
let sent;
const sender = { send: (event) => sent.push(event) };
const types = () => sent.map((e) => e.type);

beforeEach(() => {
  now = 0;
  sent = [];
  page = new Page(PAGE);
  output = new Element(page, { start: BEFORE.length, end: BEFORE.length + OUTPUT.length });
});

const observe = (options = {}) => watch(output, { interactionId: "i-1", token: "tok-1", ...options }, sender);

test("every event carries the interaction's id and token, a new id and the time", () => {
  const button = new Element(page);
  observe({ copyButtons: [button] });
  button.dispatch("click");
  button.dispatch("click");
  assert.equal(sent.length, 2);
  for (const event of sent) {
    assert.equal(event.interaction_id, "i-1");
    assert.equal(event.interaction_token, "tok-1");
    assert.match(event.ts, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  }
  assert.notEqual(sent[0].event_id, sent[1].event_id);
});

test("a copy button copies the whole output", () => {
  const button = new Element(page);
  observe({ copyButtons: [button] });
  button.dispatch("click");
  assert.deepEqual(sent.map(({ type, chars }) => ({ type, chars })), [{ type: "copy", chars: OUTPUT.length }]);
});

test("a copied selection counts only its characters inside the output", () => {
  observe();
  page.select(0, BEFORE.length + 4); // from the question into "Open"
  page.dispatch("copy");
  page.select(BEFORE.length + 5, PAGE.length); // from "Settings" to the page's end
  page.dispatch("copy");
  page.select(0, PAGE.length); // everything
  page.dispatch("copy");
  page.select(BEFORE.length + 5, BEFORE.length + 13); // "Settings" alone
  page.dispatch("copy");
  assert.deepEqual(sent.map((e) => e.chars), [4, OUTPUT.length - 5, OUTPUT.length, 8]);
});

test("a copy of text outside the output, or of nothing, is not the output's", () => {
  observe();
  page.select(0, BEFORE.length); // the question only
  page.dispatch("copy");
  page.selection = [];
  page.dispatch("copy");
  assert.deepEqual(sent, []);
});

test("a copy inside the focused editable counts its selected characters", () => {
  const draft = new TextArea(page);
  draft.value = OUTPUT;
  observe({ editable: draft });
  page.activeElement = draft;
  draft.selectionStart = 5;
  draft.selectionEnd = 13;
  page.dispatch("copy");
  assert.deepEqual(sent.map(({ type, chars }) => ({ type, chars })), [{ type: "copy", chars: 8 }]);
});

test("a draft sent unchanged is an accept, sent once", () => {
  const draft = new TextArea(page);
  draft.value = OUTPUT;
  const send = new Element(page);
  observe({ editable: draft, submitButtons: [send] });
  draft.dispatch("blur"); // leaving it unchanged is not using it
  assert.deepEqual(sent, []);
  send.dispatch("click");
  send.dispatch("click");
  draft.dispatch("blur");
  assert.deepEqual(types(), ["accept"]);
});

test("a draft changed is an edit with the text kept, never also an accept", () => {
  const draft = new TextArea(page);
  draft.value = OUTPUT;
  const send = new Element(page);
  observe({ editable: draft, submitButtons: [send] });
  draft.value = "Open Settings > Security, then Reset password.";
  send.dispatch("click");
  send.dispatch("click"); // sent again unchanged since
  assert.deepEqual(sent.map(({ type, text }) => ({ type, text })), [{ type: "edit", text: draft.value }]);
});

test("each change is an edit when the editable loses focus, and its form's submit sends it", () => {
  const form = new Target();
  const draft = new TextArea(page, { form });
  draft.value = OUTPUT;
  observe({ editable: draft });
  draft.value = "Open Settings.";
  draft.dispatch("blur");
  draft.dispatch("blur"); // no change since
  draft.value = "Open Settings, please.";
  form.dispatch("submit");
  assert.deepEqual(sent.map((e) => e.text), ["Open Settings.", "Open Settings, please."]);
  assert.deepEqual(types(), ["edit", "edit"]);
});

test("a contenteditable's text is what an edit keeps", () => {
  // not an input or a textarea: its text is read from the page
  const draft = new Element(page, { start: BEFORE.length, end: BEFORE.length + OUTPUT.length });
  observe({ editable: draft });
  page.text = `${BEFORE}Open Settings. Was this helpful?`;
  draft.end = BEFORE.length + "Open Settings.".length;
  draft.dispatch("blur");
  assert.deepEqual(sent.map(({ type, text }) => ({ type, text })), [{ type: "edit", text: "Open Settings." }]);
});

test("abandon is sent once, however often the page is hidden", () => {
  const observation = observe();
  observation.hidden("page_hidden");
  observation.shown();
  observation.hidden("page_hidden");
  observation.hidden("page_closed");
  assert.deepEqual(sent.filter((e) => e.type === "abandon").map((e) => e.reason), ["page_hidden"]);
});

test("no abandon after a positive signal: a copy, an accept, thumbs up or a score of 4 or more", () => {
  const signals = {
    copy: (o) => o.copied(),
    accept: (o) => o.accepted(),
    "thumbs up": (o) => o.rate({ thumbs: "up" }),
    "score 4": (o) => o.rate({ score: 4 }),
  };
  for (const [name, signal] of Object.entries(signals)) {
    sent = [];
    const observation = observe();
    signal(observation);
    observation.hidden("page_closed");
    assert.ok(!types().includes("abandon"), name);
    observation.end();
  }
});

test("a thumbs down, a low score or a retry is not positive: the abandon is still sent", () => {
  for (const signal of [(o) => o.rate({ thumbs: "down" }), (o) => o.rate({ score: 2 }), (o) => o.retried()]) {
    sent = [];
    const observation = observe();
    signal(observation);
    observation.hidden("page_closed");
    assert.equal(types().filter((t) => t === "abandon").length, 1);
    observation.end();
  }
});

test("a click in the rating container rates with its data-flywheel-rating", () => {
  const rating = new Target();
  observe({ rating });
  const click = (value) => rating.dispatch("click", { target: new Element(page, { rating: value }) });
  click("up");
  click("3");
  click("9"); // not a rating
  rating.dispatch("click", { target: new Element(page) }); // outside any rating button
  assert.deepEqual(sent.map(({ thumbs, score }) => ({ thumbs, score })),
    [{ thumbs: "up", score: undefined }, { thumbs: undefined, score: 3 }]);
});

test("dwell is the time the output was on screen in the foreground, its total so far", () => {
  let report;
  page.defaultView = {
    IntersectionObserver: class {
      constructor(callback) {
        report = (entry) => callback([entry]);
      }
      observe() {}
      disconnect() {}
    },
  };
  const observation = observe();
  const seen = (ratio, height) => report({ isIntersecting: ratio > 0, intersectionRatio: ratio,
    rootBounds: { height: 800 }, intersectionRect: { height } });
  seen(0.6, 120); // more than half of it on screen
  now = 3000;
  seen(0.1, 20); // scrolled mostly away
  now = 9000;
  seen(0.2, 500); // taller than the viewport: it fills more than half of it
  now = 10000;
  observation.hidden("page_hidden");
  now = 60000; // in the background: counts nothing
  observation.shown();
  now = 61000;
  observation.end();
  assert.deepEqual(sent.filter((e) => e.type === "dwell").map((e) => e.dwell_ms), [4000, 5000]);
});

test("after end nothing more is sent and no listener is left", () => {
  const button = new Element(page);
  const draft = new TextArea(page);
  const observation = observe({ copyButtons: [button], acceptButtons: [button], editable: draft });
  observation.end();
  button.dispatch("click");
  page.dispatch("copy");
  observation.hidden("page_closed");
  assert.deepEqual(sent, []);
  assert.equal(button.listening + page.listening + draft.listening, 0);
});
