{
  "signer": "kneescreen project release key",
  "key": "2a743286c67ec64665f34688dc155e82fc271d014a6fd9a4f3226b4d42a26776",
  "signature": "ac7b22a1830e859e3f680f89a3f68ff0ba2350cfa7534d61cc0e4e478903c84ed4a10aac4bcbe8cbbd9925cae9ab0a9c23d0f86460d5ac602b971faf1fbfa300"
}