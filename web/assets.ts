/**
 * Where the built console lives (`npm run build -w web` writes it; the control plane serves it under
 * /console/). The build output is not committed: set-up builds it on a fresh clone.
 */
import { fileURLToPath } from "node:url";

export const CONSOLE_ASSETS_DIR = fileURLToPath(new URL("./dist/", import.meta.url));
