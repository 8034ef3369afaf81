// Dwell accounting: only time on screen with the page in the foreground counts.
import assert from "node:assert/strict";
import { test } from "node:test";
import { DwellClock } from "../../build/dwell.js";

test("time counts only while on screen and in the foreground", () => {
  let t = 0;
  const clock = new DwellClock(() => t, true);
  t = 1000; // loaded, not yet on screen
  assert.equal(clock.ms(), 0);
  clock.setOnScreen(true);
  t = 3000;
  assert.equal(clock.ms(), 2000); // the running stretch counts
  clock.setForeground(false); // another tab
  t = 10000;
  assert.equal(clock.ms(), 2000);
  clock.setForeground(true);
  t = 10500;
  clock.setOnScreen(false); // scrolled away
  t = 20000;
  assert.equal(clock.ms(), 2500);
});

test("a page loaded in the background counts nothing until it comes to the front", () => {
  let t = 0;
  const clock = new DwellClock(() => t, false);
  clock.setOnScreen(true);
  t = 5000;
  assert.equal(clock.ms(), 0);
  clock.setForeground(true);
  t = 5250;
  assert.equal(clock.ms(), 250);
});

test("repeated notices of the same state change nothing", () => {
  let t = 0;
  const clock = new DwellClock(() => t, true);
  clock.setOnScreen(true);
  t = 100;
  clock.setOnScreen(true);
  t = 200;
  clock.setForeground(true);
  t = 300;
  assert.equal(clock.ms(), 300);
});
