{
  "targets": [
    {
      "target_name": "vmvault_native",
      "sources": ["src/addon.c", "src/cut.c", "src/blake3.c", "src/lz4.c", "src/batch.c", "src/codec_napi.c", "src/read_seam.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "cflags!": ["-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-llz4"]
    }
  ]
}
