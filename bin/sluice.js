#!/usr/bin/env node
// The `sluice` command. Registers the TypeScript loader, then hands over to the dispatcher.
import { register } from "tsx/esm/api";
register();
await import("./cli.ts");
