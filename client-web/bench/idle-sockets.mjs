// N WebSockets to the coordinator that only wait for `welcome` and hold:
// what an idle browser socket costs the coordinator (scripts/bench-idle-sockets.sh).
// node bench/idle-sockets.mjs ws://HOST:PORT/ws N HOLD_MS
import WebSocket from 'ws';
const [url, n, holdMs] = [process.argv[2], +process.argv[3], +process.argv[4]];
const socks = [];
let welcomed = 0;
for (let i = 0; i < n; i++) {
  const ws = new WebSocket(url);
  ws.on('message', (d) => { const m = JSON.parse(d); if (m.type === 'welcome') welcomed++; });
  ws.on('error', () => {});
  socks.push(ws);
  if (i % 50 === 49) await new Promise((r) => setTimeout(r, 20));
}
while (welcomed < n) await new Promise((r) => setTimeout(r, 50));
console.log(`welcomed ${welcomed}`);
await new Promise((r) => setTimeout(r, holdMs));
for (const s of socks) s.close();
process.exit(0);
