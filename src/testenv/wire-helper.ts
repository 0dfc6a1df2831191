// Child-process entry point that does packet I/O inside a network namespace on behalf of a test or the
// lab. Node cannot setns(2), so the parent starts this script with `ip netns exec NS node wire-helper.ts`
// (see WireHelper in wire.ts) and drives it with one JSON command per stdin line. Replies and events are
// JSON lines on stdout:
//   → {"seq":1,"cmd":"capture","sock":"a","iface":"eth0","protocol":"arp"|"ipv6"|"all"}
//   → {"seq":2,"cmd":"send","sock":"a","hex":"ffff…"}
//   → {"seq":3,"cmd":"close","sock":"a"}
//   → {"seq":4,"cmd":"announcer","burstIntervalMs":200,…}   (other fields: AnnouncerOptions numbers/booleans;
//                                                          interfaces are rescanned via `ip`)
//   → {"seq":5,"cmd":"advertise","name":"foo","ip":"198.18.0.100","interfaces":[]}
//   → {"seq":6,"cmd":"withdraw","name":"foo","ip":"198.18.0.100"}
//   → {"seq":7,"cmd":"rescan"}
//   → {"seq":8,"cmd":"udp","ip":"198.18.0.100","port":9}        (one datagram, e.g. to trigger ARP/NS)
//   ← {"ev":"ready"}  {"ev":"ok","seq":1}  {"ev":"error","seq":1,"message":"…","code":"EPERM"}
//   ← {"ev":"frame","sock":"a","hex":"…"}  {"ev":"counter","name":"responseSent","ip":"…","ifname":"…"}
import { createSocket } from 'node:dgram';
import { Announcer } from '../agent/announcer.ts';
import { IpRoute } from '../agent/net/iproute.ts';
import { ETH_P_ALL, ETH_P_ARP, ETH_P_IPV6, PacketSocket } from '../agent/net/packet.ts';
import { emit, serveCommands, type Command } from './helper-process.ts';


const sockets = new Map<string, PacketSocket>();
let announcer: Announcer | undefined;

const PROTOCOLS: Record<string, number> = { arp: ETH_P_ARP, ipv6: ETH_P_IPV6, all: ETH_P_ALL };

async function handle(c: Command): Promise<void> {
  switch (c.cmd) {
    case 'capture': {
      const id = String(c.sock);
      const proto = PROTOCOLS[String(c.protocol)];
      if (proto === undefined) throw new Error(`unknown protocol ${String(c.protocol)}`);
      const s = PacketSocket.open(String(c.iface), proto);
      s.on('frame', (f) => emit({ ev: 'frame', sock: id, hex: f.toString('hex') }));
      sockets.set(id, s);
      return;
    }
    case 'send': {
      const s = sockets.get(String(c.sock));
      if (s === undefined) throw new Error(`no socket ${String(c.sock)}`);
      s.send(Buffer.from(String(c.hex), 'hex'));
      return;
    }
    case 'close':
      sockets.get(String(c.sock))?.close();
      sockets.delete(String(c.sock));
      return;
    case 'announcer': {
      const { seq: _seq, cmd: _cmd, ...o } = c; // the remaining fields are AnnouncerOptions (numbers, booleans)
      const counter = (name: string) => (ip: string, ifname: string) => emit({ ev: 'counter', name, ip, ifname });
      announcer = new Announcer({
        ...o,
        addressManager: new IpRoute(),
        hooks: {
          announcementSent: counter('announcementSent'),
          requestReceived: counter('requestReceived'),
          responseSent: counter('responseSent'),
          error: (err, context) => emit({ ev: 'announcerError', context, message: err instanceof Error ? err.message : String(err) }),
        },
      });
      await announcer.start();
      return;
    }
    case 'advertise':
      requireAnnouncer().advertise({ name: String(c.name), ip: String(c.ip), interfaces: (c.interfaces as string[] | undefined) ?? [] });
      return;
    case 'withdraw':
      requireAnnouncer().withdraw(String(c.name), String(c.ip));
      return;
    case 'rescan':
      await requireAnnouncer().rescan();
      return;
    case 'udp': {
      const ip = String(c.ip);
      const sock = createSocket(ip.includes(':') ? 'udp6' : 'udp4');
      await new Promise<void>((resolve, reject) => sock.send(Buffer.from('egressgw'), Number(c.port ?? 9), ip, (err) => (err ? reject(err) : resolve())));
      sock.close();
      return;
    }
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

function requireAnnouncer(): Announcer {
  if (announcer === undefined) throw new Error('start the announcer first');
  return announcer;
}

serveCommands(handle, () => {
  announcer?.stop();
  for (const s of sockets.values()) s.close();
});
