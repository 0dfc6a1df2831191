// Child-process entry point that sends and receives real UDP/TCP traffic inside a network namespace on
// behalf of a test or the bench (Node cannot setns(2); the parent runs `ip netns exec NS node
// traffic-helper.ts`, see Traffic in traffic.ts). One JSON command per stdin line; JSON events on stdout:
//   → {"seq":1,"cmd":"udpListen","id":"sink","port":5000}        ← {"ev":"udp","id":"sink","from":"198.18.0.100","fromPort":4711,"data":"…","t":…}
//   → {"seq":2,"cmd":"udpSend","host":"203.0.113.10","port":5000,"data":"x"}      (one datagram)
//   → {"seq":3,"cmd":"udpStream","id":"s1","host":"…","port":5000,"intervalMs":10}  (data "s1:<n>" every interval)
//   → {"seq":4,"cmd":"tcpListen","id":"echo","port":7000}        ← {"ev":"accept","id":"echo","from":…,"fromPort":…}
//        with "record":true also ← {"ev":"recv","id":"echo","fromPort":…,"data":"<line>"} per line it echoes and
//        {"ev":"closed","id":"echo","fromPort":…,"error":…} when a connection ends (off by default: the bench's
//        listeners carry thousands of lines)
//   → {"seq":5,"cmd":"tcpConnect","id":"c1","host":"…","port":7000,"intervalMs":50,"localPort":…}
//        ← {"ev":"connected","id":"c1","localPort":…}  then a line every interval, echoed by the server;
//        ← {"ev":"echo","id":"c1","n":…} every 10 echoes, {"ev":"closed","id":"c1","error":"…","stopped":false} when it
//          ends (stopped: by our own stop command). localPort binds the source port (optional).
//        "intervalMs":0 sends nothing by itself: lines go with tcpSend, and every echo is an event (with its data)
//   → {"seq":6,"cmd":"tcpSend","id":"c1","data":"x"}             (one line on a connection)
//   → {"seq":7,"cmd":"tcpPeer","id":"echo","fromPort":…,"action":"send"|"end"|"reset"|"keepalive","data":"x"}
//        (the server side of an accepted connection: a line of its own, a half-close (FIN; it still reads and
//        records, no longer echoes), a RST, or TCP keepalive after 1 s idle (probes: bare ACKs))
//   → {"seq":8,"cmd":"stop","id":"s1"}                           (stream, listener or connection)
//   ← {"ev":"ready"}  {"ev":"ok","seq":1}  {"ev":"error","seq":1,"message":"…"}
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { emit, serveCommands, type Command } from './helper-process.ts';


const stoppers = new Map<string, () => void>();
const senders = new Map<string, (line: string) => void>();
/** Accepted connections by `<listener id>:<peer port>`. */
const peers = new Map<string, Socket>();
const now = (): number => performance.timeOrigin + performance.now();

let sender: UdpSocket | undefined;
function udpSender(): UdpSocket {
  if (!sender) {
    sender = createSocket('udp4');
    // An unreachable destination (ICMP) must not kill the helper.
    sender.on('error', () => undefined);
  }
  return sender;
}

async function handle(c: Command): Promise<void> {
  const id = String(c.id ?? '');
  switch (c.cmd) {
    case 'udpListen': {
      const s = createSocket('udp4');
      s.on('message', (msg, rinfo) => emit({ ev: 'udp', id, from: rinfo.address, fromPort: rinfo.port, data: msg.toString(), t: now() }));
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.bind(Number(c.port), () => resolve());
      });
      stoppers.set(id, () => s.close());
      return;
    }
    case 'udpSend':
      udpSender().send(String(c.data ?? ''), Number(c.port), String(c.host));
      return;
    case 'udpStream': {
      let n = 0;
      const timer = setInterval(() => {
        n++;
        udpSender().send(`${id}:${n}`, Number(c.port), String(c.host));
      }, Number(c.intervalMs ?? 10));
      stoppers.set(id, () => clearInterval(timer));
      return;
    }
    case 'tcpListen': {
      const conns = new Set<Socket>();
      const record = c.record === true;
      const server: Server = createServer((sock) => {
        conns.add(sock);
        const fromPort = sock.remotePort;
        const key = `${id}:${fromPort}`;
        peers.set(key, sock);
        emit({ ev: 'accept', id, from: sock.remoteAddress?.replace(/^::ffff:/, ''), fromPort, t: now() });
        let buf = '';
        sock.on('data', (d) => {
          if (!sock.writableEnded) sock.write(d);
          if (!record) return;
          buf += d.toString();
          let i: number;
          while ((i = buf.indexOf('\n')) >= 0) {
            emit({ ev: 'recv', id, fromPort, data: buf.slice(0, i), t: now() });
            buf = buf.slice(i + 1);
          }
        });
        let error: string | undefined;
        sock.on('error', (e) => (error = e.message));
        sock.on('close', () => {
          conns.delete(sock);
          if (peers.get(key) === sock) peers.delete(key);
          if (record) emit({ ev: 'closed', id, fromPort, error, t: now() });
        });
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(Number(c.port), () => resolve());
      });
      stoppers.set(id, () => {
        server.close();
        for (const s of conns) s.destroy();
      });
      return;
    }
    case 'tcpConnect': {
      const sock = createConnection({ host: String(c.host), port: Number(c.port), ...(c.localPort === undefined ? {} : { localPort: Number(c.localPort) }) });
      sock.setNoDelay(true);
      const manual = c.intervalMs === 0;
      let sent = 0;
      let echoed = 0;
      let buf = '';
      let timer: NodeJS.Timeout | undefined;
      sock.on('connect', () => {
        emit({ ev: 'connected', id, localPort: sock.localPort, t: now() });
        if (manual) return;
        timer = setInterval(() => {
          sent++;
          sock.write(`${sent}\n`);
        }, Number(c.intervalMs ?? 50));
      });
      sock.on('data', (d) => {
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          echoed++;
          if (manual) emit({ ev: 'echo', id, n: echoed, data: line, t: now() });
          else if (echoed % 10 === 0) emit({ ev: 'echo', id, n: echoed, t: now() });
        }
      });
      senders.set(id, (line) => sock.write(`${line}\n`));
      let closed = false;
      let stopped = false;
      const close = (error?: string) => {
        if (closed) return;
        closed = true;
        clearInterval(timer);
        emit({ ev: 'closed', id, echoed, error, stopped, t: now() });
      };
      sock.on('error', (e) => close(e.message));
      sock.on('close', () => {
        senders.delete(id);
        close();
      });
      stoppers.set(id, () => {
        stopped = true;
        clearInterval(timer);
        sock.destroy();
      });
      return;
    }
    case 'tcpSend': {
      const send = senders.get(id);
      if (!send) throw new Error(`no open connection ${id}`);
      send(String(c.data ?? ''));
      return;
    }
    case 'tcpPeer': {
      const sock = peers.get(`${id}:${Number(c.fromPort)}`);
      if (!sock) throw new Error(`no accepted connection ${id} from port ${c.fromPort}`);
      if (c.action === 'send') sock.write(`${String(c.data ?? '')}\n`);
      else if (c.action === 'end') sock.end();
      else if (c.action === 'reset') sock.resetAndDestroy();
      else if (c.action === 'keepalive') sock.setKeepAlive(true, 1000);
      else throw new Error(`unknown tcpPeer action ${c.action}`);
      return;
    }
    case 'stop':
      stoppers.get(id)?.();
      stoppers.delete(id);
      return;
    default:
      throw new Error(`unknown command ${c.cmd}`);
  }
}

serveCommands(handle);
