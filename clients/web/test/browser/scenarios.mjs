// Drives Debian's headless Chromium (Playwright with its executable) through the example page, one user per
// scenario, and prints what each scenario did as JSON (the interaction ids and what to expect of them). The
// Python browser test (tests/services/test_web_browser.py) serves the page, runs the gateway and reads the lake.
//
//   node scenarios.mjs <page url> <chromium executable> <gateway url> <events each scenario's page sends, as JSON>
//   (SCENARIOS=copy,edit to run some)
import { chromium } from "playwright-core";

const [pageUrl, executablePath, gatewayUrl, expectedJson] = process.argv.slice(2);
const expected = JSON.parse(expectedJson);
const FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

/** Events the gateway accepted from the browser key so far (its /metrics). */
async function accepted() {
  const text = await (await fetch(`${gatewayUrl}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith("flywheel_gateway_events_total{")
    && l.includes('outcome="accepted"') && l.includes('key="web"'));
  return line ? Number(line.split(" ").pop()) : 0;
}

/**
 * A closed tab's keepalive requests outlive it in a real browser, whose profile stays; closing this test's
 * context would cancel them, so it waits until the gateway has accepted what the scenario's page sent.
 */
async function settled(before, count) {
  const deadline = Date.now() + 30000;
  while ((await accepted()) < before + count) {
    if (Date.now() > deadline) throw new Error(`the gateway did not get the ${count} events of the page`);
    await sleep(100);
  }
}

async function open(context) {
  const page = await context.newPage();
  await page.goto(pageUrl);
  await page.waitForSelector("body[data-ready=true]");
  return page;
}

const interactionId = (page) => page.evaluate(() => window.flywheelExample.interactionId);
const delivered = (page) => page.waitForFunction(() => window.flywheelExample.client.sender.pending === 0);

/** Select `n` characters of the answer with the mouse's selection API, then the keyboard's copy. */
async function selectAndCopy(page, n) {
  await page.evaluate((chars) => {
    const text = document.getElementById("answer").firstChild;
    const range = document.createRange();
    range.setStart(text, 5);
    range.setEnd(text, 5 + chars);
    getSelection().removeAllRanges();
    getSelection().addRange(range);
  }, n);
  await page.keyboard.press("Control+C");
}

/**
 * Another tab comes to the front. Headless Chromium keeps every tab "visible" (it has no tab strip or screen to
 * hide one from), so the page is told what a headed browser tells it: visibilityState "hidden" and the
 * visibilitychange event. The other tab is opened for real.
 */
async function switchTab(page, hidden) {
  return page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (value ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => value });
    document.dispatchEvent(new Event("visibilitychange"));
    return performance.now();
  }, hidden);
}

const scenarios = {
  async copy(context) {
    const page = await open(context);
    await selectAndCopy(page, 20);
    await page.click("#copy");
    const answer = await page.textContent("#answer");
    await delivered(page);
    const iid = await interactionId(page);
    await page.close({ runBeforeUnload: true });
    return { iid, chars: [20, answer.length] };
  },

  async edit(context) {
    const page = await open(context);
    const kept = "Open Settings > Account > Reset password. Thanks for waiting!";
    await page.click("#draft");
    await page.keyboard.press("Control+A");
    await page.keyboard.type(kept);
    await page.click("#send");
    await delivered(page);
    const iid = await interactionId(page);
    await page.close({ runBeforeUnload: true });
    return { iid, kept };
  },

  async dwell_and_tab_switch(context) {
    const page = await open(context);
    // the page's own clock at each change, so slow round trips on a loaded machine do not blur the figures
    const at = (change) => page.evaluate((what) => {
      if (what === "away") window.scrollTo(0, document.body.scrollHeight);
      if (what === "back") window.scrollTo(0, 0);
      return performance.now();
    }, change);
    const shown = await at("now");
    await sleep(1200); // the answer on screen, the page in front
    const away = await at("away");
    await sleep(1000); // scrolled away: not seen
    const back = await at("back");
    await sleep(300); // seen again
    const hidden = await switchTab(page, true);
    const other = await context.newPage(); // the other tab, for real
    await other.bringToFront();
    await sleep(1000); // hidden: not seen
    await delivered(page);
    const iid = await interactionId(page);
    await other.close();
    await page.close({ runBeforeUnload: true });
    return { iid, seen_ms: away - shown + (hidden - back), away_ms: back - away };
  },

  async close(context) {
    const page = await open(context);
    await sleep(500);
    const iid = await interactionId(page);
    await page.close(); // nothing sent yet: the last events leave as the page closes
    return { iid };
  },

  async offline(context) {
    const page = await open(context);
    await context.setOffline(true);
    await selectAndCopy(page, 12);
    await page.click("#rating [data-flywheel-rating=down]");
    await sleep(2500); // several failed sends and retries
    const waiting = await page.evaluate(() => window.flywheelExample.client.sender.pending);
    await context.setOffline(false);
    await delivered(page);
    const iid = await interactionId(page);
    await page.close({ runBeforeUnload: true });
    return { iid, waiting_while_offline: waiting };
  },

  async regenerate(context) {
    const page = await open(context);
    const first = await interactionId(page);
    await sleep(300);
    await page.click("#regenerate");
    await page.waitForFunction((old) => window.flywheelExample.interactionId !== old, first);
    await page.click("#rating [data-flywheel-rating=up]");
    await delivered(page);
    const second = await interactionId(page);
    await page.close({ runBeforeUnload: true });
    return { iid: first, new_iid: second };
  },
};

const browser = await chromium.launch({ executablePath, headless: true, args: [...FLAGS] });
const results = {};
const sent = []; // every request the library made to the gateway: its headers and body
try {
  for (const [name, run] of Object.entries(scenarios)) {
    if (process.env.SCENARIOS && !process.env.SCENARIOS.split(",").includes(name)) continue;
    const context = await browser.newContext();
    // a cookie the gateway's host would get with a credentialed request (cookies ignore the port)
    await context.addCookies([{ name: "session", value: "page-secret", url: pageUrl }]);
    const reading = [];
    context.on("request", (request) => {
      if (!request.url().endsWith("/v1/events")) return;
      // allHeaders: the headers as sent, cookies included
      reading.push(request.allHeaders().then(
        (headers) => sent.push({ scenario: name, method: request.method(), headers, body: request.postData() }),
        () => sent.push({ scenario: name, method: request.method(), headers: null, body: request.postData() }),
      ));
    });
    try {
      const before = await accepted();
      results[name] = await run(context);
      await settled(before, expected[name]);
      await Promise.all(reading);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ results, sent }));
