import { defineConfig } from "vite";

// The console is served by the control plane under /console/; the build is plain static files.
export default defineConfig({
  base: "/console/",
  root: import.meta.dirname,
  build: {
    outDir: "dist",
    emptyOutDir: true,
    // no inline scripts or styles: the page's Content-Security-Policy forbids them
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
    target: "es2022",
    sourcemap: false,
    reportCompressedSize: false,
  },
  oxc: { jsx: { runtime: "automatic", importSource: "preact" } },
});
