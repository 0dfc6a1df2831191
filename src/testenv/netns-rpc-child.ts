// Child side of netns-rpc.ts: imports the module named on the command line and runs its exports on
// request. → {"seq":1,"fn":"open","args":[…]}   ← {"seq":1,"value":…} or {"seq":1,"error":"…","code":"…"}
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';

const mod = (await import(pathToFileURL(process.argv[2]!).href)) as Record<string, unknown>;
const reply = (m: object): void => void process.stdout.write(`${JSON.stringify(m)}\n`);

createInterface({ input: process.stdin })
  .on('line', (line) => {
    const { seq, fn, args } = JSON.parse(line) as { seq: number; fn: string; args: unknown[] };
    const f = mod[fn];
    Promise.resolve()
      .then(() => {
        if (typeof f !== 'function') throw new Error(`${process.argv[2]} exports no function ${fn}`);
        return (f as (...a: unknown[]) => unknown)(...args);
      })
      .then(
        (value) => reply({ seq, value: value ?? null }),
        (err: unknown) => reply({ seq, error: err instanceof Error ? err.message : String(err), code: (err as { code?: unknown }).code }),
      );
  })
  // The parent closing stdin means "done".
  .on('close', () => process.exit(0));
reply({ ready: true });
