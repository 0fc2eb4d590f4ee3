{
  "variables": {
    "has_fuse3": "<!(pkg-config --exists fuse3 && echo 1 || echo 0)"
  },
  "targets": [
    {
      "target_name": "vmvault_native",
      "sources": ["src/addon.c", "src/cut.c", "src/blake3.c", "src/lz4.c", "src/batch.c", "src/codec_napi.c", "src/read_seam.c", "src/writeback.c", "src/file_writer.c"],
      "cflags": ["-O3", "-std=c11", "-Wall", "-Wextra"],
      "cflags!": ["-O2"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-llz4"]
    },
    {
      "target_name": "vmvault_fuse3",
      "conditions": [
        ["has_fuse3==1", {
          "sources": ["src/fuse3/addon.c", "src/fuse3/requests.c", "src/fuse3/replies.c", "src/fuse3/notify.c", "src/fuse3/holes.c", "src/fuse3/datawin.c", "src/fuse3/attrs.c", "src/fuse3/names.c", "src/fuse3/quiet.c", "src/fuse3/ring.c", "src/fuse3/jsreader.c"],
          "cflags": ["-O2", "-std=gnu11", "-Wall", "-Wextra", "-Wno-unused-parameter", "<!@(pkg-config --cflags fuse3)"],
          "defines": ["NAPI_VERSION=8"],
          "libraries": ["<!@(pkg-config --libs fuse3)"]
        }, {
          "type": "none"
        }]
      ]
    }
  ]
}
