// The install root (`root` in config, `root` in the manifest): an absolute path of
// A-Z a-z 0-9 . _ - segments, no `..`, no `//`. One definition for config and manifest readers.

/** Long enough for any real prefix, short enough that every path under it stays well below PATH_MAX. */
export const ROOT_MAX_LENGTH = 200;

// Every repetition ends with its `/`, so there is one way to match any input: linear time. (The
// former `^\/([A-Za-z0-9._-]+\/?)*$` let a segment split anywhere and backtracked exponentially.)
export const ROOT_PATTERN = /^\/(?:[A-Za-z0-9._-]+\/)*[A-Za-z0-9._-]*$/;

export const noDotDot = (path: string): boolean => !path.split("/").includes("..");

export const isRootPath = (path: string): boolean => path.length <= ROOT_MAX_LENGTH && ROOT_PATTERN.test(path) && noDotDot(path);
