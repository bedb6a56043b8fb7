// Serves one Pulumi TypeScript program to `pulumi up|preview|destroy|refresh --client=ADDR`.
// Stand-in for the pulumi-language-nodejs plugin (which the Go module proxy here does not serve):
// it is @pulumi/pulumi's own automation-API language server, run in a fresh process per operation
// so the program is evaluated afresh each time, as the real language host does.
// Usage: node engine-host.cjs ENTRY_FILE   -> prints the gRPC port on stdout, serves until killed.
"use strict";
require("tsx/cjs/api").register(); // TypeScript programs, without a build step
const grpc = require("@grpc/grpc-js");
const { grpcChannelOptions } = require("@pulumi/pulumi/runtime");
const { LanguageServer } = require("@pulumi/pulumi/automation/server");
const langrpc = require("@pulumi/pulumi/proto/language_grpc_pb");

const entry = process.argv[2];
if (!entry) {
  process.stderr.write("usage: engine-host.cjs ENTRY_FILE\n");
  process.exit(2);
}
// `pulumi up` runs the program twice (preview, then update) against one language host: forget the
// project's own modules (not node_modules) so each run evaluates the program afresh.
// Like the nodejs language host: the module's exports are the stack outputs; a default-exported
// function is called and its result used instead.
const program = async () => {
  for (const k of Object.keys(require.cache)) if (!/[\\/]node_modules[\\/]/.test(k)) delete require.cache[k];
  const mod = require(entry);
  return typeof mod.default === "function" ? await mod.default() : mod;
};
const server = new grpc.Server({ ...grpcChannelOptions });
server.addService(langrpc.LanguageRuntimeService, new LanguageServer(program));
server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, port) => {
  if (err) {
    process.stderr.write(`engine-host: bind failed: ${err.message}\n`);
    process.exit(1);
  }
  process.stdout.write(`${port}\n`);
});
for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => server.tryShutdown(() => process.exit(0)));
