// Who answered an observer's ARP questions (pure). An observer on the LAN asks "who has IP?" every
// `intervalMs`; every host that owns the IP answers each question within a few milliseconds, and the
// next question comes an interval later. So replies to the observer closer together than half an
// interval are answers to one question: more than one MAC among them means two owners at that moment.
// Used by the failover bench (bench/failover/measure.ts) and the chaos suite (test/chaos).

export interface ArpAnswerFrame {
  /** Wall clock, ms. */
  t: number;
  op: 'request' | 'reply';
  senderMac: string;
  senderIp: string;
  targetIp: string;
  gratuitous: boolean;
}

/** The answers to one question about `ip`: who answered, from the first answer's time. */
export interface AnsweredQuestion {
  t: number;
  ip: string;
  macs: string[];
}

/** The questions about each IP that were answered, in time order per IP (replies to `proberIp` only). */
export function answeredQuestions(frames: readonly ArpAnswerFrame[], proberIp: string, intervalMs: number): AnsweredQuestion[] {
  const replies = frames.filter((f) => f.op === 'reply' && !f.gratuitous && f.targetIp === proberIp).sort((a, b) => a.t - b.t);
  const open = new Map<string, { q: AnsweredQuestion; last: number }>();
  const out: AnsweredQuestion[] = [];
  for (const r of replies) {
    const cur = open.get(r.senderIp);
    if (cur === undefined || r.t - cur.last > intervalMs / 2) {
      const q: AnsweredQuestion = { t: r.t, ip: r.senderIp, macs: [r.senderMac] };
      out.push(q);
      open.set(r.senderIp, { q, last: r.t });
      continue;
    }
    if (!cur.q.macs.includes(r.senderMac)) cur.q.macs.push(r.senderMac);
    cur.last = r.t;
  }
  return out;
}
