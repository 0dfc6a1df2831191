// The lab's screen: `egressgw status` (same fetch, same renderer) redrawn in place on a terminal, with a
// header saying what the lab is and a footer with the keys and what the last action did.

import type { KubeClient } from '../kube/client.ts';
import { fetchStatusModel } from '../cli/status.ts';
import { renderStatus } from '../cli/status-model.ts';

/** The status screen as `egressgw status` prints it. */
export async function statusText(client: KubeClient, color: boolean): Promise<string> {
  return renderStatus(await fetchStatusModel(client), { color, now: Date.now() });
}

const HOME_AND_CLEAR = '\x1b[H\x1b[2J';

export class LiveScreen {
  readonly #out: NodeJS.WriteStream;
  readonly #body: () => Promise<string>;
  readonly #header: () => string;
  readonly #footer: () => string;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #drawing = false;
  #again = false;
  #last = '';

  constructor(out: NodeJS.WriteStream, parts: { header: () => string; body: () => Promise<string>; footer: () => string }) {
    this.#out = out;
    this.#header = parts.header;
    this.#body = parts.body;
    this.#footer = parts.footer;
  }

  start(intervalMs = 1000): void {
    void this.refresh();
    this.#timer = setInterval(() => void this.refresh(), intervalMs);
  }

  /** Redraws now (after a key, an action's result); never two draws at once. */
  async refresh(): Promise<void> {
    if (this.#drawing) {
      this.#again = true;
      return;
    }
    this.#drawing = true;
    try {
      let body: string;
      try {
        body = await this.#body();
        this.#last = body;
      } catch (err) {
        // The API server can be briefly busy; keep the last screen and say why it is not fresh.
        body = `${this.#last}\n(status not refreshed: ${(err as Error).message})\n`;
      }
      if (this.#stopped) return;
      this.#out.write(HOME_AND_CLEAR + this.#header() + '\n\n' + body + '\n' + this.#footer() + '\n');
    } finally {
      this.#drawing = false;
      if (this.#again) {
        this.#again = false;
        void this.refresh();
      }
    }
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
  }
}

/**
 * Single key presses from a terminal (raw mode, so Ctrl-C arrives as the key "\x03", not as SIGINT).
 * Returns a function that restores the terminal.
 */
export function readKeys(stdin: NodeJS.ReadStream, onKey: (key: string) => void): () => void {
  stdin.setRawMode(true);
  stdin.setEncoding('utf8');
  const onData = (chunk: string): void => {
    for (const ch of chunk) onKey(ch);
  };
  stdin.on('data', onData);
  stdin.resume();
  let restored = false;
  return () => {
    if (restored) return;
    restored = true;
    stdin.off('data', onData);
    stdin.setRawMode(false);
    stdin.pause();
  };
}
