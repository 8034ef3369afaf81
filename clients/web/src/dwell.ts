// Time an output was actually seen: it counts only while the element is on screen and the page is in the
// foreground, never the wall-clock time since load.

export class DwellClock {
  private onScreen = false;
  private foreground: boolean;
  private since: number | null = null;
  private total = 0;

  constructor(private readonly now: () => number, foreground: boolean) {
    this.foreground = foreground;
  }

  setOnScreen(value: boolean): void {
    this.update(() => (this.onScreen = value));
  }

  setForeground(value: boolean): void {
    this.update(() => (this.foreground = value));
  }

  /** Milliseconds seen so far, including the running stretch. */
  ms(): number {
    return Math.round(this.total + (this.since === null ? 0 : this.now() - this.since));
  }

  private update(change: () => void): void {
    const t = this.now();
    if (this.since !== null) this.total += t - this.since;
    change();
    this.since = this.onScreen && this.foreground ? t : null;
  }
}
