/**
 * The baseline: a minimal `ws` relay with no persistence, speaking the same 16-byte-header packets (AUTH, SEND,
 * PUSH, HEARTBEAT, ACK) and the few HTTP calls the load tool uses to set up users, contacts and groups. It keeps
 * only an in-memory counter per user for `seq`, checks nothing, stores nothing, and pushes each message to every
 * connection of every recipient at once. Results against it read as Node's practical floor for the
 * idle/direct/group scenarios (it cannot serve storm/catchup: there is no log to resync from).
 *
 *   node --import tsx bench/baseline/ws-relay.ts --port 9000
 */
import http from 'node:http';
import { WebSocketServer, type WebSocket } from 'ws';
import { encodePacket, FrameDecoder, OP, parseBody } from '../../src/protocol/index.ts';

interface User {
  uin: number;
  username: string;
  seq: number;
  conns: Set<WebSocket>;
}

const users = new Map<string, User>();
const sessions = new Map<string, User>();
const groups = new Map<string, string[]>();
let nextUin = 1;
let nextMsgId = 1;
let nextGroup = 1;
let nextSid = 1;

function user(username: string): User {
  let u = users.get(username);
  if (!u) users.set(username, (u = { uin: nextUin++, username, seq: 0, conns: new Set() }));
  return u;
}

function api(path: string, body: any, sid: string | undefined): unknown {
  const me = sid ? sessions.get(sid) : undefined;
  switch (path) {
    case '/api/register':
      return { ret: 0, uin: user(body.username).uin };
    case '/api/login': {
      const u = user(body.username);
      const s = `relay-${nextSid++}-${Math.random().toString(36).slice(2)}`;
      sessions.set(s, u);
      return { ret: 0, sid: s, uin: u.uin, username: u.username, displayName: u.username, syncKey: u.seq, epoch: 'relay' };
    }
    case '/api/contacts/request':
    case '/api/contacts/accept':
      return me ? { ret: 0 } : { ret: 1100, errMsg: 'not logged in' };
    case '/api/groups/create': {
      if (!me) return { ret: 1100, errMsg: 'not logged in' };
      const id = `@@${nextGroup++}`;
      groups.set(id, [me.username, ...body.members]);
      return { ret: 0, groupId: id };
    }
    default:
      return { ret: 3, errMsg: 'not found' };
  }
}

const port = Number(process.argv[process.argv.indexOf('--port') + 1] || 9000);
const server = http.createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    let out: unknown;
    if (req.url === '/api/gateways') out = { ret: 0, gateways: [{ transport: 'ws', url: `ws://127.0.0.1:${port}/ws` }] };
    else {
      let body: any = {};
      try {
        body = chunks.length ? JSON.parse(Buffer.concat(chunks).toString('utf8')) : {};
      } catch {
        out = { ret: 1, errMsg: 'bad json' };
      }
      out ??= api(req.url ?? '', body, req.headers.authorization?.replace(/^Bearer /, ''));
    }
    const text = JSON.stringify(out);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  });
});

const wss = new WebSocketServer({ server, path: '/ws', perMessageDeflate: false });
wss.on('connection', (ws) => {
  const decoder = new FrameDecoder();
  let me: User | undefined;
  ws.on('message', (data: Buffer) => {
    const { packets, error } = decoder.push(data);
    if (error) {
      ws.send(encodePacket(OP.ERROR, 0, { ret: 1, errMsg: error.message }));
      ws.close();
      return;
    }
    for (const p of packets) {
      let body: any;
      try {
        body = parseBody(p.body) ?? {};
      } catch {
        continue;
      }
      if (p.op === OP.HEARTBEAT) ws.send(encodePacket(OP.HEARTBEAT_ACK, p.seq));
      else if (p.op === OP.AUTH) {
        me = sessions.get(body.sid);
        if (!me) {
          ws.send(encodePacket(OP.AUTH_OK, p.seq, { ret: 1100, errMsg: 'not logged in' }));
          continue;
        }
        me.conns.add(ws);
        ws.send(encodePacket(OP.AUTH_OK, p.seq, { ret: 0, uin: me.uin, syncKey: me.seq, epoch: 'relay', heartbeatMs: 30_000 }));
      } else if (p.op === OP.SEND && me) {
        const createTime = Date.now();
        const msgId = String(nextMsgId++);
        const isGroup = String(body.to).startsWith('@@');
        const recipients = isGroup ? (groups.get(body.to) ?? []) : [body.to, me.username];
        // Encode the message once; each recipient's packet only differs by its seq.
        const rest = JSON.stringify({ kind: 'msg', msgId, clientMsgId: body.clientMsgId, from: me.username, to: body.to, type: body.type, content: body.content, createTime }).slice(1);
        let mySeq = 0;
        for (const name of recipients) {
          const u = users.get(name);
          if (!u) continue;
          const seq = ++u.seq;
          if (u === me) mySeq = seq;
          if (u.conns.size === 0) continue;
          const packet = encodePacket(OP.PUSH, 0, `{"entries":[{"seq":${seq},${rest}],"syncKey":${seq}}`);
          for (const c of u.conns) c.send(packet);
        }
        ws.send(encodePacket(OP.SEND_ACK, p.seq, { ret: 0, msgId, seq: mySeq, createTime, duplicate: false }));
      } else if (p.op === OP.SYNC && me) {
        ws.send(encodePacket(OP.SYNC_RESP, p.seq, { ret: 0, entries: [], syncKey: me.seq, continueFlag: false, epoch: 'relay' }));
      }
    }
  });
  ws.on('close', () => me?.conns.delete(ws));
  ws.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => console.error(`ws-relay baseline on :${port}`));
process.on('SIGTERM', () => process.exit(0));
