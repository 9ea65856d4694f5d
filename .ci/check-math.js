// Parse every math span of the generated rustdoc pages with the vendored KaTeX, as the pages' auto-render would.
// Usage: node .ci/check-math.js [DOC_DIR]   (default target/doc/bilevel, after `cargo doc --no-deps`)
// Exits 1 on any span KaTeX rejects (it would show as red source on the page) or when no span is found.
"use strict";
const fs = require("fs");
const path = require("path");
const root = path.resolve(__dirname, "..");
const katex = require(path.join(root, "docs/katex/katex.min.js"));
const dir = path.resolve(process.argv[2] || path.join(root, "target/doc/bilevel"));
function walk(d, out) {
  for (const e of fs.readdirSync(d, { withFileTypes: true })) {
    const p = path.join(d, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (p.endsWith(".html")) out.push(p);
  }
  return out;
}
const unescape = (s) =>
  s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&amp;/g, "&");
let spans = 0;
const bad = [];
for (const page of walk(dir, [])) {
  // Text outside the elements auto-render ignores (the header's own script and comments included).
  const html = fs
    .readFileSync(page, "utf8")
    .replace(/<!--[\s\S]*?-->/g, "")
    .replace(/<(pre|script|style|head|code|textarea)\b[^>]*>[\s\S]*?<\/\1>/g, "");
  for (const node of html.split(/<[^>]*>/)) {
    const text = unescape(node);
    const re = /\$\$([\s\S]+?)\$\$|\$([^$]+?)\$/g;
    let m;
    while ((m = re.exec(text))) {
      const display = m[1] !== undefined;
      spans++;
      try {
        katex.renderToString(display ? m[1] : m[2], { displayMode: display, throwOnError: true, strict: "ignore" });
      } catch (e) {
        bad.push(`${path.relative(dir, page)}: ${e.message.slice(0, 200)}`);
      }
    }
  }
}
for (const b of [...new Set(bad)]) console.log(b);
console.log(`check-math: ${spans} math spans, ${bad.length} rejected by KaTeX`);
process.exit(bad.length > 0 || spans === 0 ? 1 : 0);
