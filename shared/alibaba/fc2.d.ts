// `@alicloud/fc2` ships no type declarations; `fc.ts` describes the part it uses.
declare module "@alicloud/fc2" {
  const FC: unknown;
  export default FC;
}
