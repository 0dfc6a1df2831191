// The lab's screen: `egressgw status` (same fetch, same renderer: src/status) redrawn in place on a
// terminal, with a header saying what the lab is and a footer with the keys and what the last action did;
// liveScreen() runs it with key presses as actions until q.

import type { KubeClient } from '../kube/client.ts';
import { fetchStatusModel } from '../status/fetch.ts';
import { renderStatus } from '../status/model.ts';
import type { Ctx } from './context.ts';

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

interface Action {
  busy: string;
  run: () => Promise<string>;
}

/** Redraws the status every second until q / Ctrl-C; keys run actions one at a time. Resolves 0. */
export async function liveScreen(
  ctx: Ctx,
  client: KubeClient,
  opts: {
    header: () => string;
    keys: string;
    actions: Record<string, Action>;
    /** Shown under the keys whatever the last action was. */
    extra?: () => string;
    initial?: (note: (s: string) => void) => Promise<string>;
  },
): Promise<number> {
  let note = '';
  let busy = false;
  const screen = new LiveScreen(process.stdout, {
    header: () => `${opts.header()} · ${new Date().toLocaleTimeString()}`,
    body: () => statusText(client, ctx.flags.color),
    footer: () => [`keys: ${opts.keys}`, opts.extra?.() ?? '', note].filter(Boolean).join('\n\n'),
  });
  const perform = (busyText: string, fn: () => Promise<string>): void => {
    if (busy) return;
    busy = true;
    note = busyText;
    void screen.refresh();
    fn()
      .then((text) => (note = text), (err: Error) => (note = ctx.signal.aborted ? note : `failed: ${err.message}`))
      .finally(() => {
        busy = false;
        void screen.refresh();
      });
  };
  let quit!: () => void;
  const quitP = new Promise<void>((r) => (quit = r));
  const restore = readKeys(process.stdin, (key) => {
    if (key === 'q' || key === 'Q' || key === '\x03') quit();
    const a = opts.actions[key.toLowerCase()];
    if (a) perform(a.busy, a.run);
  });
  screen.start(1000);
  if (opts.initial) {
    const initial = opts.initial;
    perform('…', () => initial((s) => ((note = s), void screen.refresh())));
  }
  const onAbort = (): void => quit();
  ctx.signal.addEventListener('abort', onAbort, { once: true });
  try {
    await quitP;
  } finally {
    ctx.signal.removeEventListener('abort', onAbort);
    screen.stop();
    restore();
  }
  process.stdout.write('\n');
  ctx.say('quitting: stopping the lab…');
  return 0;
}
