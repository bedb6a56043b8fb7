// One push (pushProvider.create) of the PushInputs JSON on stdin, in a process of its own: the
// client that apply-crash.test.ts kills in the middle of an apply. Prints "pushed" or the error.
import { pushProvider } from "../../components/push";

const chunks: Buffer[] = [];
process.stdin.on("data", (c: Buffer) => chunks.push(c));
process.stdin.on("end", () => {
  pushProvider.create(JSON.parse(Buffer.concat(chunks).toString())).then(
    () => console.log("pushed"),
    (e: Error) => {
      console.log(e.message);
      process.exitCode = 1;
    },
  );
});
