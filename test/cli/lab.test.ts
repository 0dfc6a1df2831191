// `egressgw lab` as a user runs it: the real binary as a child process, stdin not a terminal (so it runs
// one failover and exits), then a check that it left nothing behind — no namespace or link named after
// its lab id, no temp dir, none of the processes it had started. Every wait reads the child's output
// with a deadline; nothing sleeps.

import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { BIN, ROOT } from './helpers.ts';

const DEADLINE = 240_000; // generous: start-up, a failover and cleanup take ~10 s; a cold API server build takes longer
const skipNet = process.getuid?.() !== 0 ? 'needs root and ip netns' : false;

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the first match of `re` in stdout+stderr; rejects if the child exits first or at the deadline. */
  waitFor(re: RegExp, what: string): Promise<RegExpMatchArray>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const runs: ChildProcess[] = [];
after(() => {
  // Only if a test failed half-way: do not leave our own child running.
  for (const c of runs) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
});

function startLabChild(args: string[]): Run {
  return startChild(process.execPath, [BIN, 'lab', ...args]);
}

/** The lab on a terminal: util-linux `script` gives it a pseudo-terminal; what we write to stdin are key presses. */
function startLabOnTerminal(args: string[]): Run {
  const cmd = [process.execPath, BIN, 'lab', ...args].map((a) => `'${a}'`).join(' ');
  return startChild('script', ['-qfec', cmd, '/dev/null']);
}

function startChild(cmd: string, args: string[]): Run {
  const child = spawn(cmd, args, {
    cwd: ROOT,
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, NO_COLOR: '1', EGRESSGW_DEBUG: '1' },
  });
  runs.push(child);
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.on('data', (b: Buffer) => {
    out += b.toString();
    for (const l of listeners) l();
  });
  child.stderr!.on('data', (b: Buffer) => {
    err += b.toString();
    for (const l of listeners) l();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(re, what) {
      return new Promise((resolve, reject) => {
        const check = (): void => {
          const m = (out + '\n' + err).match(re);
          if (m) {
            done();
            resolve(m);
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`timed out waiting for ${what}\nstdout:\n${out}\nstderr:\n${err}`));
        }, DEADLINE);
        const onExit = (): void => {
          // Output may still be draining: check once more after the streams end.
          setImmediate(() => {
            check();
            done();
            reject(new Error(`lab exited before ${what}\nstdout:\n${out}\nstderr:\n${err}`));
          });
        };
        const done = (): void => {
          clearTimeout(timer);
          listeners.delete(check);
          child.off('exit', onExit);
        };
        listeners.add(check);
        child.once('exit', onExit);
        check();
      });
    },
  };
}

// ---------- processes: the child's descendants, identified by pid + start time (pids get reused) ----------

interface Proc {
  pid: number;
  start: string;
  comm: string;
}

function readStat(pid: number): { ppid: number; start: string; comm: string; state: string } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const close = s.lastIndexOf(')');
    const rest = s.slice(close + 2).split(' ');
    // After "(comm)": state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
    // cutime cstime priority nice num_threads itrealvalue starttime …
    return { state: rest[0]!, ppid: Number(rest[1]), start: rest[19]!, comm: s.slice(s.indexOf('(') + 1, close) };
  } catch {
    return undefined;
  }
}

function descendants(root: number): Proc[] {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(Number(d));
    if (!st) continue;
    kids.set(st.ppid, [...(kids.get(st.ppid) ?? []), Number(d)]);
  }
  const out: Proc[] = [];
  const queue = [...(kids.get(root) ?? [])];
  while (queue.length > 0) {
    const pid = queue.shift()!;
    const st = readStat(pid);
    if (st) out.push({ pid, start: st.start, comm: st.comm });
    queue.push(...(kids.get(pid) ?? []));
  }
  return out;
}

/** Still running (a zombie that nobody reaped yet is not running). */
function stillRunning(p: Proc): boolean {
  const st = readStat(p.pid);
  return st !== undefined && st.start === p.start && st.state !== 'Z' && st.state !== 'X';
}

// ---------- what the lab creates ----------

interface LabTraces {
  id: string;
  dirs: string[];
}

async function labTraces(run: Run): Promise<LabTraces> {
  const [, id] = await run.waitFor(/namespaces (egl[0-9a-f]{6})-router/, 'the network progress line');
  const [, logs] = await run.waitFor(/logs in (\S+?)\)/, 'the agents progress line');
  const [, server] = await run.waitFor(/its files: (\S+?)\)/, 'the API server progress line');
  return { id: id!, dirs: [logs!, server!] };
}

function assertNothingLeft(t: LabTraces, procs: Proc[]): void {
  const nss = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).split('\n').map((l) => l.split(' ')[0]).filter((n) => n?.startsWith(`${t.id}-`));
  assert.deepEqual(nss, [], `namespaces of ${t.id} left`);
  const links = (JSON.parse(execFileSync('ip', ['-json', 'link', 'show'], { encoding: 'utf8' })) as Array<{ ifname: string }>).map((l) => l.ifname).filter((n) => n.startsWith(t.id));
  assert.deepEqual(links, [], `root-namespace links of ${t.id} left`);
  assert.equal(existsSync(`/run/egressgw-netns/${t.id}`), false, 'lab marker file left');
  for (const d of t.dirs) assert.equal(existsSync(d), false, `temp dir ${d} left`);
  assert.ok(procs.length >= 5, `the lab's processes were seen while it ran (etcd, API server, 3 agents): ${JSON.stringify(procs)}`);
  assert.deepEqual(procs.filter(stillRunning), [], 'processes the lab started are still running');
}

/** The ACTIVE NODE column of `gateway` in one status table (columns: NAME MODE VIP/INTERFACE ACTIVE NODE …). */
function activeNode(statusText: string, gateway: string): string | undefined {
  const row = statusText.split('\n').find((l) => l.startsWith(`${gateway} `));
  return row?.trim().split(/\s+/)[3];
}

describe('egressgw lab', { timeout: 600_000 }, () => {
  test('--scenario failover --once: status before and after, a measured failover, nothing left behind', { skip: skipNet }, async () => {
    const run = startLabChild(['--scenario', 'failover', '--once', '--no-color']);
    const traces = await labTraces(run);
    await run.waitFor(/── status before failover ──/, 'the status before the failover');
    const procs = descendants(run.child.pid!);
    const { code, signal } = await run.exited;
    const out = run.stdout();
    assert.equal(code, 0, `exit code (signal ${signal})\nstdout:\n${out}\nstderr:\n${run.stderr()}`);

    const before = out.split('── status before failover ──')[1]?.split('failover of ')[0] ?? '';
    const after = out.split('── status after failover ──')[1] ?? '';
    assert.ok(before && after, `both status screens printed:\n${out}`);
    const a = activeNode(before, 'lab-egress');
    const b = activeNode(after, 'lab-egress');
    assert.match(a ?? '', /^node\d$/, `an active node before:\n${before}`);
    assert.match(b ?? '', /^node\d$/, `an active node after:\n${after}`);
    assert.notEqual(a, b, 'the active node changed');
    assert.match(out, new RegExp(`failover of lab-egress \\(VIP 198\\.18\\.0\\.100\\): ${a} → ${b}`));
    assert.match(out, /^failover time: \d+ ms \(kill → /m);
    // The seed policy names a gateway that does not exist: shown as such, before and after.
    for (const screen of [before, after]) assert.match(screen, /^my-egressgw-policy\s+my-egressgw\s.*False GatewayNotFound$/m);

    assertNothingLeft(traces, procs);
  });

  for (const [sig, exitCode] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
    test(`${sig} while the lab runs: it stops and removes everything it created`, { skip: skipNet }, async () => {
      const run = startLabChild(['--no-color']);
      const traces = await labTraces(run);
      await run.waitFor(/── status before failover ──/, 'the status screen');
      const procs = descendants(run.child.pid!);
      run.child.kill(sig);
      const { code, signal } = await run.exited;
      assert.ok(code === exitCode || signal === sig, `interrupted exit (code ${code}, signal ${signal})\nstderr:\n${run.stderr()}`);
      assert.match(run.stderr(), new RegExp(`${sig}: stopping the lab`));
      assertNothingLeft(traces, procs);
    });
  }

  test('on a terminal: live screen, f fails the active node over, q quits and cleans up', { skip: skipNet || (existsSync('/usr/bin/script') ? false : 'needs util-linux script') }, async () => {
    const run = startLabOnTerminal(['--no-color']);
    const traces = await labTraces(run);
    await run.waitFor(/keys: f fail the active node of lab-egress/, 'the live screen');
    const procs = descendants(run.child.pid!);
    run.child.stdin!.write('f');
    await run.waitFor(/failover time: \d+ ms/, 'the measured failover on the screen');
    run.child.stdin!.write('q');
    const { code } = await run.exited;
    assert.equal(code, 0, `exit code\n${run.stdout()}`);
    assert.match(run.stdout(), /stopped: no processes, namespaces or links of egl[0-9a-f]{6} left/);
    assertNothingLeft(traces, procs);
  });

  test('--no-network --once: the control plane only, status with GatewayNotFound, exit 0', async () => {
    const run = startLabChild(['--no-network', '--once', '--no-color']);
    await run.waitFor(/── status ──/, 'the status screen');
    const procs = descendants(run.child.pid!);
    const [, server] = await run.waitFor(/its files: (\S+?)\)/, 'the API server progress line');
    const { code } = await run.exited;
    assert.equal(code, 0, `exit code\nstdout:\n${run.stdout()}\nstderr:\n${run.stderr()}`);
    assert.match(run.stderr(), /control plane only/);
    assert.match(run.stdout(), /^my-egressgw-policy\s+my-egressgw\s.*False GatewayNotFound$/m);
    // PrimaryIP-mode gateways need no agent: the seed one is judged on the lab nodes' objects alone.
    assert.match(run.stdout(), /^myegressgw\s+PrimaryIP\s+eth1\s+node\d\s/m);
    assert.equal(existsSync(server!), false, 'API server temp dir removed');
    assert.deepEqual(procs.filter(stillRunning), [], 'etcd and the API server are gone');
  });

  test('bad flags are a usage error', async () => {
    const run = startLabChild(['--scenario', 'meteor']);
    const { code } = await run.exited;
    assert.equal(code, 2);
    assert.match(run.stderr(), /--scenario: "meteor" is not a scenario/);
  });
});
