{
  "signer": "kneescreen project release key",
  "key": "7ed1ea6f936f935d56588ea33637136513b11bbd0f8e1cc37596aff02f39ef60",
  "signature": "3abb12c7246adfbe5b7e3fd4f8bb8a1462fc5f8af7e21aec79af946c6e1289f93be06a39e493d03aa6b59c31f9c630a0aea69eb5ea4d233b591591b3da310e00"
}