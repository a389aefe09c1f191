// The prototype's runtime: Node's own `http` module counting GET /log (answers 204).
// Owns only the handler and the listen call; keep-alive and parsing are Node's defaults.
// Usage: node node_http.js PORT [HOST] [BACKLOG]
'use strict';
const http = require('http');

const port = Number(process.argv[2]);
const host = process.argv[3] || '127.0.0.1';
const backlog = Number(process.argv[4] || 2048);
let hits = 0;

const server = http.createServer((req, res) => {
  if (req.url === '/log') {
    hits += 1;
    res.writeHead(204);
  } else {
    res.writeHead(404, { 'Content-Length': '0' });
  }
  res.end();
});
server.listen({ port, host, backlog });
process.on('SIGTERM', () => server.close(() => process.exit(0)));
