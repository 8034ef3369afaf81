// Delivery to the gateway: events are queued, sent in batches, retried with backoff until the gateway accepted or
// rejected each of them, and flushed at once when the page goes away. Every request is a keepalive fetch, so one
// in flight when the page closes still arrives; a retry resends the same events, whose ids the gateway remembers.

import type { FeedbackEvent } from "./events.js";

export interface SenderOptions {
  /** The gateway's base URL (https://flywheel.example.com) or its /v1/events URL. */
  endpoint: string;
  /** A publishable browser key (pk_...), whose origins include this page's. */
  key: string;
  /** Events per request (at most the browser key's burst). */
  batchSize?: number;
  /** How long an event waits for others before its batch is sent. */
  flushMs?: number;
  /** The first retry's delay; each next one doubles, up to maxRetryMs. */
  retryMs?: number;
  maxRetryMs?: number;
  /** Events held at most while the gateway cannot be reached; newer ones are dropped beyond it. */
  maxQueue?: number;
  /** Told of events the gateway refused (they are not retried) and of events dropped from a full queue. */
  onDrop?: (reason: string, events: FeedbackEvent[]) => void;
  fetch?: typeof fetch;
  random?: () => number;
}

interface Result {
  status: "accepted" | "rejected" | "unavailable";
  code?: string;
  reason?: string;
}

const RETRYABLE = new Set([408, 429, 500, 502, 503, 504]);

export class Sender {
  readonly url: string;
  private readonly opts: Required<Omit<SenderOptions, "endpoint" | "key">> & { key: string };
  private readonly queue: FeedbackEvent[] = [];
  private readonly sending = new Set<FeedbackEvent>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private timerAt = Infinity;
  private failures = 0;
  private notBefore = 0;

  constructor(options: SenderOptions) {
    const base = options.endpoint.replace(/\/+$/, "");
    this.url = base.endsWith("/v1/events") ? base : `${base}/v1/events`;
    this.opts = {
      key: options.key,
      batchSize: options.batchSize ?? 20,
      flushMs: options.flushMs ?? 1000,
      retryMs: options.retryMs ?? 500,
      maxRetryMs: options.maxRetryMs ?? 30000,
      maxQueue: options.maxQueue ?? 1000,
      onDrop: options.onDrop ?? ((reason) => console.warn(`flywheel: events dropped: ${reason}`)),
      fetch: options.fetch ?? ((input, init) => globalThis.fetch(input, init)),
      random: options.random ?? Math.random,
    };
  }

  /** Events not yet accepted or refused by the gateway (queued or in flight). */
  get pending(): number {
    return this.queue.length;
  }

  send(event: FeedbackEvent): void {
    if (this.queue.length >= this.opts.maxQueue) {
      this.opts.onDrop(`more than ${this.opts.maxQueue} events wait for the gateway`, [event]);
      return;
    }
    this.queue.push(event);
    this.schedule(this.waiting().length >= this.opts.batchSize ? 0 : this.opts.flushMs);
  }

  /** Send everything queued now (the page is going away), whatever the batching or backoff wait. */
  flush(): void {
    this.cancel();
    while (this.waiting().length) this.post(this.waiting().slice(0, this.opts.batchSize));
  }

  /** The network is back: retry at once. */
  retryNow(): void {
    this.failures = 0;
    this.notBefore = 0;
    if (this.waiting().length) this.schedule(0);
  }

  private waiting(): FeedbackEvent[] {
    return this.queue.filter((e) => !this.sending.has(e));
  }

  private schedule(ms: number): void {
    const at = Math.max(Date.now() + ms, this.notBefore);
    if (this.timer !== null && this.timerAt <= at) return;
    this.cancel();
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = null;
      this.timerAt = Infinity;
      const batch = this.waiting().slice(0, this.opts.batchSize);
      if (batch.length) this.post(batch);
    }, at - Date.now());
  }

  private cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.timerAt = Infinity;
  }

  private post(batch: FeedbackEvent[]): void {
    for (const e of batch) this.sending.add(e);
    let request: Promise<Response>;
    try {
      request = this.opts.fetch(this.url, {
        method: "POST",
        keepalive: true,
        mode: "cors",
        credentials: "omit", // no cookies
        referrerPolicy: "no-referrer", // not even the page's address
        headers: { Authorization: `Bearer ${this.opts.key}`, "Content-Type": "application/json" },
        body: JSON.stringify(batch),
      });
    } catch (error) {
      request = Promise.reject(error);
    }
    request.then(
      (response) => this.answered(batch, response),
      () => this.settle(batch, [], batch, 0), // offline, refused connection, keepalive quota: all again later
    );
  }

  private async answered(batch: FeedbackEvent[], response: Response): Promise<void> {
    const retryAfter = Number(response.headers.get("Retry-After")) || 0;
    let results: Result[] | null = null;
    try {
      const body = (await response.json()) as { results?: Result[]; code?: string; reason?: string };
      if (Array.isArray(body.results) && body.results.length === batch.length) results = body.results;
      else if (!response.ok) results = batch.map(() => ({ status: "rejected", ...body }) as Result);
    } catch {
      results = null;
    }
    if (RETRYABLE.has(response.status) && (results === null || response.status !== 503)) {
      this.settle(batch, [], batch, retryAfter); // the whole request again
      return;
    }
    if (results === null) {
      if (response.ok) this.settle(batch, [], [], 0);
      else this.settle(batch, batch.map((e) => [e, `HTTP ${response.status}`] as const), [], 0);
      return;
    }
    const refused: (readonly [FeedbackEvent, string])[] = [];
    const again: FeedbackEvent[] = [];
    batch.forEach((event, i) => {
      const r = results![i]!;
      if (r.status === "unavailable") again.push(event);
      else if (r.status === "rejected") refused.push([event, `${r.code ?? response.status}: ${r.reason ?? ""}`]);
    });
    this.settle(batch, refused, again, retryAfter);
  }

  /** The batch is done except `again`, which waits for a retry. */
  private settle(
    batch: FeedbackEvent[],
    refused: (readonly [FeedbackEvent, string])[],
    again: FeedbackEvent[],
    retryAfterS: number,
  ): void {
    for (const e of batch) this.sending.delete(e);
    const keep = new Set(again);
    for (const e of batch) {
      if (!keep.has(e)) this.queue.splice(this.queue.indexOf(e), 1);
    }
    for (const [event, reason] of refused) this.opts.onDrop(reason, [event]);
    if (again.length) {
      this.failures += 1;
      const backoff = Math.min(this.opts.maxRetryMs, this.opts.retryMs * 2 ** (this.failures - 1));
      const wait = Math.max(backoff * (0.5 + this.opts.random() / 2), retryAfterS * 1000);
      this.notBefore = Date.now() + wait;
      this.schedule(wait);
    } else {
      this.failures = 0;
      this.notBefore = 0;
      if (this.waiting().length) this.schedule(this.waiting().length >= this.opts.batchSize ? 0 : this.opts.flushMs);
    }
  }
}
