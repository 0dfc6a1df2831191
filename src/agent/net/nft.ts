// nftables from the agent, in process: libnftables through the egressgw_nft addon (native/nft/nft.c).
//
// Interface (one module for every nftables user in the agent: the fence, the Linux data plane):
//
//   const nft = openNft();          // NftUnavailableError when the addon or libnftables is missing
//   nft.run(script);                // every command in `script` is ONE kernel transaction: all or nothing.
//                                   // Throws NftError (nft's own message, e.g. "No such file or directory").
//   nft.listTable(family, name);    // `list table` as libnftables JSON objects, undefined when absent
//   nft.json(command);              // any other list command, JSON (`{ nftables: [...] }`)
//   nft.close();
//
// `run` is also the fast path for frequent small updates (the fence refreshes set elements several
// times a second): it forks nothing, a transaction on a small table takes well under a millisecond,
// and it is synchronous, so whatever the caller computed just before (a timeout) is committed without
// the event loop running in between. Scripts use nft's own syntax (`nft -f`), one command per line
// or `;`-separated. Everything runs in the network namespace of this process, as `nft` would.
//
// Each user owns its tables by name (the fence: `egressgw_fence`; the data plane: `inet egressgw`) and
// never touches others': no `flush ruleset`.

import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

interface NativeNftContext {
  run(script: string, json: boolean): { rc: number; output: string; error: string };
  close(): void;
}

interface NativeNftAddon {
  NftContext: new () => NativeNftContext;
}

/** Where node-gyp puts the addon, relative to the package root. */
export const NFT_ADDON_PATH = fileURLToPath(new URL('../../../build/Release/egressgw_nft.node', import.meta.url));

/** The nftables families a table can live in. */
export type NftFamily = 'ip' | 'ip6' | 'inet' | 'arp' | 'bridge' | 'netdev';

export class NftUnavailableError extends Error {
  readonly code = 'EGRESSGW_NFT_UNAVAILABLE';
  constructor(message: string, cause?: unknown) {
    super(message, { cause });
    this.name = 'NftUnavailableError';
  }
}

export class NftError extends Error {
  readonly script: string;
  readonly rc: number;
  constructor(script: string, rc: number, stderr: string) {
    const first = script.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
    super(`nft failed (rc ${rc}) on "${first}${script.includes('\n') ? ' …' : ''}": ${stderr.trim() || 'no message'}`);
    this.name = 'NftError';
    this.script = script;
    this.rc = rc;
  }
}

/** One libnftables JSON object (`{ table: {...} }`, `{ set: {...} }`, `{ rule: {...} }`, …). */
export type NftObject = Record<string, Record<string, unknown>>;

export interface Nft {
  run(script: string): void;
  listTable(family: NftFamily, name: string): NftObject[] | undefined;
  json(command: string): { nftables: NftObject[] };
  close(): void;
}

let addon: NativeNftAddon | undefined;

function loadNftAddon(): NativeNftAddon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)(NFT_ADDON_PATH) as NativeNftAddon;
    } catch (err) {
      throw new NftUnavailableError(
        `nftables addon not built (${NFT_ADDON_PATH}): run npm ci / npm rebuild (${err instanceof Error ? err.message : String(err)})`, err);
    }
  }
  return addon;
}

/** Opens an in-process nftables context. Throws {@link NftUnavailableError} naming what is missing. */
export function openNft(): Nft {
  let ctx: NativeNftContext;
  try {
    ctx = new (loadNftAddon().NftContext)();
  } catch (err) {
    if (err instanceof NftUnavailableError) throw err;
    throw new NftUnavailableError(err instanceof Error ? err.message : String(err), err);
  }
  const exec = (script: string, json: boolean): string => {
    const r = ctx.run(script, json);
    if (r.rc !== 0) throw new NftError(script, r.rc, r.error);
    return r.output;
  };
  const json = (command: string): { nftables: NftObject[] } => {
    const out = exec(command, true).trim();
    return out === '' ? { nftables: [] } : (JSON.parse(out) as { nftables: NftObject[] });
  };
  return {
    run: (script) => void exec(script, false),
    json,
    listTable(family, name) {
      try {
        return json(`list table ${family} ${name}`).nftables.filter((o) => !('metainfo' in o));
      } catch (err) {
        if (err instanceof NftError && /No such file or directory/.test(err.message)) return undefined;
        throw err;
      }
    },
    close: () => ctx.close(),
  };
}

/** The element keys of a set in a `listTable` result (addresses as nft prints them). */
export function setElements(table: readonly NftObject[] | undefined, set: string): string[] {
  const s = table?.find((o) => o.set?.name === set)?.set;
  const elems = (s?.elem as unknown[] | undefined) ?? [];
  return elems.map((e) => {
    // Plain sets list bare values; elements with a timeout come as { elem: { val, timeout, expires } }.
    if (typeof e === 'string' || typeof e === 'number') return String(e);
    const inner = (e as { elem?: { val?: unknown } }).elem;
    return String(inner?.val ?? '');
  });
}
