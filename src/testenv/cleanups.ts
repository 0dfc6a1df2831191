// What an environment started, to be stopped in reverse order whatever fails: each start step pushes
// its stop as soon as it has something to stop, so a failed start leaves nothing behind either.

export type Cleanup = () => Promise<void> | void;

export class Cleanups {
  readonly #steps: Cleanup[] = [];

  push(step: Cleanup): void {
    this.#steps.push(step);
  }

  /** Runs every step, last pushed first. A failing step is reported and the remaining steps still run. */
  async run(onError: (err: unknown) => void = () => undefined): Promise<void> {
    while (this.#steps.length > 0) {
      const step = this.#steps.pop()!;
      try {
        await step();
      } catch (err) {
        onError(err);
      }
    }
  }
}
