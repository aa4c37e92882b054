// Copies the libraries the console ships from node_modules (installed by `npm ci` from package-lock.json)
// into the Python package's static/vendor directory, with their licences. Run by `make install`
// (scripts/console-assets.sh) and by the Dockerfile's web stage.
import { copyFileSync, mkdirSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const vendor = join(here, "..", "src", "spendstream", "console", "static", "vendor");
const files = [
  ["chart.js/dist/chart.umd.min.js", "chart.umd.js"],
  ["chart.js/LICENSE.md", "chart.js.LICENSE.md"],
];

rmSync(vendor, { recursive: true, force: true });
mkdirSync(vendor, { recursive: true });
for (const [from, to] of files) {
  copyFileSync(join(here, "node_modules", from), join(vendor, to));
}
console.log(`console assets: ${files.length} files in ${vendor}`);
