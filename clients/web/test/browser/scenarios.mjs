// Drives Debian's headless Chromium (Playwright with its executable) through the example page, one user per
// scenario, and prints what each scenario did as JSON (the interaction ids and what to expect of them). The
// Python browser test (tests/services/test_web_browser.py) serves the page, runs the gateway and reads the lake.
//
//   node scenarios.mjs <page url> <chromium executable>   (SCENARIOS=copy,edit to run some)
import { chromium } from "playwright-core";

const [pageUrl, executablePath] = process.argv.slice(2);
const FLAGS = ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
  "--disable-component-update", "--disable-sync"];

const sleep = (ms) => new Promise((done) => setTimeout(done, ms));

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
  await page.evaluate((value) => {
    Object.defineProperty(document, "visibilityState", { configurable: true, get: () => (value ? "hidden" : "visible") });
    Object.defineProperty(document, "hidden", { configurable: true, get: () => value });
    document.dispatchEvent(new Event("visibilitychange"));
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
    await sleep(1200); // the answer on screen, the page in front
    await page.evaluate(() => window.scrollTo(0, document.body.scrollHeight));
    await sleep(1000); // scrolled away: not seen
    await page.evaluate(() => window.scrollTo(0, 0));
    await sleep(300); // seen again
    const other = await context.newPage(); // another tab comes to the front
    await other.bringToFront();
    await switchTab(page, true);
    await sleep(1000); // hidden: not seen
    await delivered(page);
    const iid = await interactionId(page);
    await other.close();
    await page.close({ runBeforeUnload: true });
    return { iid, seen_ms: 1500, away_ms: 2000 };
  },

  async close(context) {
    const page = await open(context);
    await sleep(500);
    const iid = await interactionId(page);
    await page.close({ runBeforeUnload: true }); // nothing sent yet: the last events leave as the page closes
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
try {
  for (const [name, run] of Object.entries(scenarios)) {
    if (process.env.SCENARIOS && !process.env.SCENARIOS.split(",").includes(name)) continue;
    const context = await browser.newContext();
    try {
      results[name] = await run(context);
    } finally {
      await context.close();
    }
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify(results));
