// Socket.IO on Node peer: a room emit, published through a small HTTP route.
// `node bench/peers/socketio_server.cjs PORT`. A client emits "join"; the server joins it to the
// room "bench" and answers "joined". POST /publish with a JSON body emits it as event "m" to the room.
"use strict";
const http = require("node:http");
const { Server } = require("socket.io");

const port = Number(process.argv[2]);
const ROOM = "bench";

const server = http.createServer((req, res) => {
  if (req.method === "POST" && req.url === "/publish") {
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      io.to(ROOM).emit("m", JSON.parse(Buffer.concat(chunks).toString()));
      res.writeHead(200, { "Content-Length": "2" });
      res.end("ok");
    });
    return;
  }
  if (!req.url.startsWith("/socket.io/")) {
    res.writeHead(404, { "Content-Length": "0" });
    res.end();
  }
});

const io = new Server(server, { transports: ["websocket"], serveClient: false });
io.on("connection", (socket) => {
  socket.on("join", () => {
    socket.join(ROOM);
    socket.emit("joined");
  });
});

server.listen(port, "127.0.0.1", 4096);
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));
