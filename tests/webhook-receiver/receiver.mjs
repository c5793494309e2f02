// A webhook receiver for the tests: verifies each delivery with the `standardwebhooks`
// library (the reference implementation, not presignd's code) and appends one JSON line per
// request to the output file: {"id", "verified", "type", "data"} or {"verified": false,
// "error"}. Answers 204 when verified, 400 otherwise.
//
//   node receiver.mjs PORT SECRET OUT_FILE
import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { Webhook } from "standardwebhooks";

const [port, secret, out] = process.argv.slice(2);
const hook = new Webhook(secret);

const server = createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    let line;
    try {
      const event = hook.verify(body, req.headers);
      line = { id: req.headers["webhook-id"], verified: true, type: event.type, data: event.data };
      res.writeHead(204).end();
    } catch (e) {
      line = { id: req.headers["webhook-id"] ?? null, verified: false, error: String(e) };
      res.writeHead(400).end();
    }
    appendFileSync(out, JSON.stringify(line) + "\n");
  });
});
server.listen(Number(port), "127.0.0.1", () => {
  console.log(`listening on ${port}`);
});
