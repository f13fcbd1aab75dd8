// PostGraphile v5 (amber preset) over the plangraph tables, as the peer in
// scripts/bench-dashboard.sh. Library mode with the node:http adaptor, set up
// as the PostGraphile CLI does, minus what a production deployment turns off:
// GraphiQL, schema watching, EXPLAIN. Its pg pool keeps the library default
// (10 connections), like plangraph's --database-max-connections.
//
// Usage: node server.mjs   (env: DATABASE_URL, PORT, HOST=127.0.0.1)
import { createServer } from "node:http";
import { postgraphile } from "postgraphile";
import { PostGraphileAmberPreset } from "postgraphile/presets/amber";
import { makePgService } from "postgraphile/adaptors/pg";
import { grafserv } from "postgraphile/grafserv/node";

const connectionString = process.env.DATABASE_URL;
const port = Number(process.env.PORT ?? 5678);
const host = process.env.HOST ?? "127.0.0.1";
if (!connectionString) {
  console.error("DATABASE_URL is required");
  process.exit(2);
}

const preset = {
  extends: [PostGraphileAmberPreset],
  pgServices: [makePgService({ connectionString, schemas: ["public"] })],
  grafserv: { port, host, graphiql: false, watch: false, websockets: false },
  grafast: { explain: false },
};

const pgl = postgraphile(preset);
const serv = pgl.createServ(grafserv);
const server = createServer();
server.on("error", (error) => {
  console.error("postgraphile server error:", error);
  process.exit(1);
});
serv.addTo(server).catch((error) => {
  console.error("postgraphile failed to initialise:", error);
  process.exit(1);
});
server.listen({ port, host }, () => {
  console.log(`postgraphile listening on http://${host}:${port}/graphql`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    server.close();
    Promise.resolve(pgl.release()).finally(() => process.exit(0));
  });
}
