{
  "signer": "kneescreen project release key",
  "key": "861dcadee96a9ecb1c524380165af96bfeb7f55e5502cf643a889ab9bac311b1",
  "signature": "75a38ffd0de7a232599433a3a868b4c95fa60ae951d766b9d850590d0baf5a9fbc5d8403862f76505206acafee560e44e70e43f60439b7c00f432da906f27f06"
}