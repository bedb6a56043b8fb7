// Tests that build network namespaces or start sshd need root. As root (CI) they always run;
// otherwise they skip, and the file says why once.
import { describe } from "vitest";

export const isRoot = process.getuid?.() === 0;

if (!isRoot) console.warn("not running as root: the tests here that need it (network namespaces, netfilter, sshd) are skipped; CI runs them as root");

/** `describe` for tests that need root. */
export const describeAsRoot = describe.skipIf(!isRoot);
