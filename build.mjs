// Bundles the deployable artefacts with esbuild. Filled in as each artefact lands.
console.log("build: nothing to bundle yet");
