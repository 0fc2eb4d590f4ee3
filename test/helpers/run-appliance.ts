// Runs the appliance in a child process for tests: the tests then drive the mount with real
// tools (qemu-img, fio, rsync, tar) without the test process serving FUSE itself.

//
// As `vmvault appliance` does (bin/vmvault.js), the V8 flags of bin/v8-flags.js are set before
// the appliance's code is loaded: tests and benches run the appliance as shipped.

const { applyV8Flags } = (await import(new URL('../../../bin/v8-flags.js', import.meta.url).href)) as { applyV8Flags(): string[] };
applyV8Flags();
const { main } = await import('../../src/appliance.js');

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
