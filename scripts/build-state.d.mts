// Types of build-state.mjs (plain JavaScript: bin/sluice.js loads it before any TypeScript loader).
export declare const SOURCE_ROOTS: readonly string[];
export declare const PACKAGES: readonly string[];
export declare const BUILD_INPUTS: readonly string[];
export declare const BUILD_INFO: string;
export declare function listSources(root: string): { files: string[]; newest: number };
export declare function staleReason(root: string): string | null;
