// The sender under node with fake timers and a fake fetch: batching, retry with backoff, ids made once.
import assert from "node:assert/strict";
import { beforeEach, afterEach, mock, test } from "node:test";
import { Sender } from "../../build/sender.js";
import { newEventId } from "../../build/ids.js";

const event = (n) => ({ event_id: `e-${n}`, ts: "2026-12-01T10:00:00.000Z", interaction_id: "i-1",
  interaction_token: "tok", type: "copy", chars: n });

/** A fetch that answers from a script of responses and records each request's events. */
function gateway(...answers) {
  const requests = [];
  const fetch = (url, init) => {
    requests.push({ url, init, events: JSON.parse(init.body) });
    const next = answers.length > 1 ? answers.shift() : answers[0];
    return next(JSON.parse(init.body));
  };
  return { fetch, requests };
}
const ok = (events) => Promise.resolve(new Response(JSON.stringify({ accepted: events.length, rejected: 0,
  unavailable: 0, results: events.map((e, index) => ({ index, status: "accepted", event_id: e.event_id })) }),
  { status: 200 }));
const offline = () => Promise.reject(new TypeError("Failed to fetch"));
const busy = (seconds) => () => Promise.resolve(new Response(JSON.stringify({ status: "unavailable",
  code: "unavailable", reason: "kafka" }), { status: 503, headers: { "Retry-After": String(seconds) } }));

/** Let timers and the promise callbacks they start run, `ms` of fake time. */
async function advance(ms) {
  for (let t = 0; t < ms; t += 50) {
    mock.timers.tick(50);
    for (let i = 0; i < 5; i++) await new Promise((done) => setImmediate(done));
  }
}

beforeEach(() => mock.timers.enable({ apis: ["setTimeout", "Date"], now: 0 }));
afterEach(() => mock.timers.reset());

test("events wait flushMs and go together in one request to /v1/events", async () => {
  const { fetch, requests } = gateway(ok);
  const sender = new Sender({ endpoint: "http://gw.test/", key: "pk_1", fetch, flushMs: 1000 });
  sender.send(event(1));
  sender.send(event(2));
  await advance(900);
  assert.equal(requests.length, 0);
  await advance(200);
  assert.equal(requests.length, 1);
  assert.equal(requests[0].url, "http://gw.test/v1/events");
  assert.deepEqual(requests[0].events.map((e) => e.event_id), ["e-1", "e-2"]);
  const init = requests[0].init;
  assert.equal(init.keepalive, true);
  assert.equal(init.credentials, "omit");
  assert.equal(init.referrerPolicy, "no-referrer");
  assert.equal(init.headers.Authorization, "Bearer pk_1");
  assert.equal(sender.pending, 0);
});

test("a full batch goes at once, and batches hold at most batchSize events", async () => {
  const { fetch, requests } = gateway(ok);
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, batchSize: 3, flushMs: 10000 });
  for (let i = 0; i < 7; i++) sender.send(event(i));
  await advance(100);
  assert.deepEqual(requests.map((r) => r.events.length), [3, 3]);
  await advance(10000);
  assert.deepEqual(requests.map((r) => r.events.length), [3, 3, 1]);
});

test("offline: retries back off exponentially, then the same events (the same ids) are delivered once", async () => {
  let down = true;
  const { fetch, requests } = gateway((events) => (down ? offline() : ok(events)));
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, flushMs: 100, retryMs: 1000,
    maxRetryMs: 4000, random: () => 1 });
  sender.send(event(1));
  await advance(100 + 1000 + 2000 + 4000 + 4000 + 100);
  const times = requests.length;
  assert.equal(times, 5); // at 0.1, 1.1, 3.1, 7.1, 11.1 s: the waits double up to maxRetryMs
  assert.equal(sender.pending, 1);
  down = false;
  await advance(4000);
  assert.equal(requests.length, times + 1);
  assert.equal(sender.pending, 0);
  assert.deepEqual(new Set(requests.map((r) => r.events[0].event_id)), new Set(["e-1"]));
  await advance(60000);
  assert.equal(requests.length, times + 1); // nothing more once accepted
});

test("the network coming back retries at once", async () => {
  let down = true;
  const { fetch, requests } = gateway((events) => (down ? offline() : ok(events)));
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, flushMs: 100, retryMs: 20000 });
  sender.send(event(1));
  await advance(200);
  assert.equal(requests.length, 1);
  down = false;
  sender.retryNow();
  await advance(100);
  assert.equal(requests.length, 2);
  assert.equal(sender.pending, 0);
});

test("a 503 waits at least its Retry-After; in a batch only the unavailable events are sent again", async () => {
  const partial = (events) => Promise.resolve(new Response(JSON.stringify({ accepted: 1, rejected: 1,
    unavailable: 1, results: [{ index: 0, status: "accepted" }, { index: 1, status: "rejected", code: "invalid",
      reason: "bad" }, { index: 2, status: "unavailable" }] }), { status: 503, headers: { "Retry-After": "3" } }));
  const dropped = [];
  const { fetch, requests } = gateway(partial, busy(2), ok);
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, flushMs: 10, retryMs: 100,
    onDrop: (reason, events) => dropped.push([reason, events.map((e) => e.event_id)]) });
  [1, 2, 3].forEach((n) => sender.send(event(n)));
  await advance(100);
  assert.equal(requests.length, 1);
  assert.deepEqual(dropped, [["invalid: bad", ["e-2"]]]); // refused events are not retried
  await advance(2800);
  assert.equal(requests.length, 1); // Retry-After: 3 s, not the 100 ms backoff
  await advance(300);
  assert.deepEqual(requests[1].events.map((e) => e.event_id), ["e-3"]);
  await advance(2100); // the whole-request 503 said 2 s
  assert.deepEqual(requests[2].events.map((e) => e.event_id), ["e-3"]);
  assert.equal(sender.pending, 0);
});

test("a refused request (401/403) is dropped and reported, not retried", async () => {
  const refused = () => Promise.resolve(new Response(JSON.stringify({ status: "rejected", code: "origin",
    reason: "origin not allowed" }), { status: 403 }));
  const dropped = [];
  const { fetch, requests } = gateway(refused);
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, flushMs: 10,
    onDrop: (reason) => dropped.push(reason) });
  sender.send(event(1));
  await advance(60000);
  assert.equal(requests.length, 1);
  assert.deepEqual(dropped, ["origin: origin not allowed"]);
  assert.equal(sender.pending, 0);
});

test("flush sends everything queued at once, in batches, whatever the wait", async () => {
  const { fetch, requests } = gateway(offline, ok);
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, batchSize: 2, flushMs: 5000,
    retryMs: 60000 });
  sender.send(event(1));
  await advance(5100); // failed once: the next try is a minute away
  [2, 3, 4].forEach((n) => sender.send(event(n)));
  sender.flush(); // the page goes away
  assert.deepEqual(requests.slice(1).map((r) => r.events.map((e) => e.event_id)), [["e-1", "e-2"], ["e-3", "e-4"]]);
  await advance(100);
  assert.equal(sender.pending, 0);
});

test("an event in flight is not sent again by flush", async () => {
  let answer;
  const { fetch, requests } = gateway((events) => new Promise((done) => (answer = () => done(ok(events)))));
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch, flushMs: 10 });
  sender.send(event(1));
  await advance(50);
  sender.flush();
  assert.equal(requests.length, 1);
  answer();
  await advance(50);
  assert.equal(sender.pending, 0);
});

test("a full queue drops newer events and says so", () => {
  const dropped = [];
  const sender = new Sender({ endpoint: "http://gw.test", key: "k", fetch: offline, maxQueue: 2,
    onDrop: (reason, events) => dropped.push(events[0].event_id) });
  [1, 2, 3].forEach((n) => sender.send(event(n)));
  assert.equal(sender.pending, 2);
  assert.deepEqual(dropped, ["e-3"]);
});

test("event ids are UUIDs, new each time", () => {
  const ids = new Set(Array.from({ length: 1000 }, newEventId));
  assert.equal(ids.size, 1000);
  for (const id of ids) assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
});
