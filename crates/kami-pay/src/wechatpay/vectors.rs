//! B.9 test vectors and the K2 key/cert of `protocols.md` (test-only, public: from
//! wechatpay-apiv3/wechatpay-go, Apache-2.0, and computed with that key). The key's PEM label is
//! `TESTING KEY` as in the Go source, so secret scanners leave it alone; the tests relabel it.

pub const K2_TESTING_KEY: &str = "-----BEGIN TESTING KEY-----\n\
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQDZUJN33V+dSfvd\n\
fL0Mu+39XrZNXFFMQSy1V15FpncHeV47SmV0TzTqZc7hHB0ddqAdDi8Z5k3TKqb7\n\
6sOwYr5TcAfuR6PIPaleyE0/0KrljBum2Isa2Nyq7Dgc3ElBQ6YN4l/a+DpvKaz1\n\
FSKmKrhLNskqokWVSlu4g8OlKlbPXQ9ibII14MZRQrrkTmHYHzfi7GXXM0thAKuR\n\
0HNvyhTHBh4/lrYM3GaMvmWwkwvsMavnOex6+eioZHBOb1/EIZ/LzC6zuHArPpyW\n\
3daGaZ1rtQB1vVzTyERAVVFsXXgBHvfFud3w3ShsJYk8JvMwK2RpJ5/gV0QSARcm\n\
LDRUAlPzAgMBAAECggEBAMc7rDeUaXiWv6bMGbZ3BTXpg1FhdddnWUnYE8HfX/km\n\
OFI7XtBHXcgYFpcjYz4D5787pcsk7ezPidAj58zqenuclmjKnUmT3pfbI5eCA2v4\n\
C9HnbYDrmUPK1ZcADtka4D6ScDccpNYNa1g2TFHzkIrEa6H+q7S3O2fqxY/DRVtN\n\
0JIXalBb8daaqL5QVzSmM2BMVnHy+YITJWIkP2a3pKs9C0W65JGDsnG0wVrHinHF\n\
+cnhFZIbaPEI//DAFMc9NkrWOKVRTEgcCUxCFaHOZVNxDWZD7A2ZfJB2rK6eg//y\n\
gEiFDR2h6mTaDowMB4YF2n2dsIO4/dCG8vPHI20jn4ECgYEA/ZGu6lEMlO0XZnam\n\
AZGtiNgLcCfM/C2ZERZE7QTRPZH1WdK92Al9ndldsswFw4baJrJLCmghjF/iG4zi\n\
hhBvLnOLksnZUfjdumxoHDWXo2QBWbI5QsWIE7AuTiWgWj1I7X4fCXSQf6i+M/y2\n\
6TogQ7d0ANpZFyOkTNMn/tiJvLECgYEA22XqlamG/yfAGWery5KNH2DGlTIyd6xJ\n\
WtJ9j3jU99lZ0bCQ5xhiBbU9ImxCi3zgTsoqLWgA/p00HhNFNoUcTl9ofc0G3zwT\n\
D1y0ZzcnVKxGJdZ6ohW52V0hJStAigtjYAsUgjm7//FH7PiQDBDP1Wa6xSRkDQU/\n\
aSbQxvEE8+MCgYEA3bb8krW7opyM0XL9RHH0oqsFlVO30Oit5lrqebS0oHl3Zsr2\n\
ZGgoBlWBsEzk3UqUhTFwm/DhJLTSJ/TQPRkxnhQ5/mewNhS9C7yua7wQkzVmWN+V\n\
YeUGTvDGDF6qDz12/vJAgSwDDRym8x4NcXD5tTw7mmNRcwIfL22SkysThIECgYAV\n\
BgccoEoXWS/HP2/u6fQr9ZIR6eV8Ij5FPbZacTG3LlS1Cz5XZra95UgebFFUHHtC\n\
EY1JHJY7z8SWvTH8r3Su7eWNaIAoFBGffzqqSVazfm6aYZsOvRY6BfqPHT3p/H1h\n\
Tq6AbBffxrcltgvXnCTORjHPglU0CjSxVs7awW3AEQKBgB5WtaC8VLROM7rkfVIq\n\
+RXqE5vtJfa3e3N7W3RqxKp4zHFAPfr82FK5CX2bppEaxY7SEZVvVInKDc5gKdG/\n\
jWNRBmvvftZhY59PILHO2X5vO4FXh7suEjy6VIh0gsnK36mmRboYIBGsNuDHjXLe\n\
BDa+8mDLkWu5nHEhOxy2JJZl\n\
-----END TESTING KEY-----\n";
pub const K2_CERT: &str = "-----BEGIN CERTIFICATE-----\n\
MIIDVzCCAj+gAwIBAgIJANfOWdH1ItcBMA0GCSqGSIb3DQEBCwUAMEIxCzAJBgNV\n\
BAYTAlhYMRUwEwYDVQQHDAxEZWZhdWx0IENpdHkxHDAaBgNVBAoME0RlZmF1bHQg\n\
Q29tcGFueSBMdGQwHhcNMjEwNDI3MDg1NTIzWhcNMzEwNDI1MDg1NTIzWjBCMQsw\n\
CQYDVQQGEwJYWDEVMBMGA1UEBwwMRGVmYXVsdCBDaXR5MRwwGgYDVQQKDBNEZWZh\n\
dWx0IENvbXBhbnkgTHRkMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n\
2VCTd91fnUn73Xy9DLvt/V62TVxRTEEstVdeRaZ3B3leO0pldE806mXO4RwdHXag\n\
HQ4vGeZN0yqm++rDsGK+U3AH7kejyD2pXshNP9Cq5YwbptiLGtjcquw4HNxJQUOm\n\
DeJf2vg6byms9RUipiq4SzbJKqJFlUpbuIPDpSpWz10PYmyCNeDGUUK65E5h2B83\n\
4uxl1zNLYQCrkdBzb8oUxwYeP5a2DNxmjL5lsJML7DGr5znsevnoqGRwTm9fxCGf\n\
y8wus7hwKz6clt3Whmmda7UAdb1c08hEQFVRbF14AR73xbnd8N0obCWJPCbzMCtk\n\
aSef4FdEEgEXJiw0VAJT8wIDAQABo1AwTjAdBgNVHQ4EFgQUT1c7nd/SUO76HSoZ\n\
umNUJv1R5PwwHwYDVR0jBBgwFoAUT1c7nd/SUO76HSoZumNUJv1R5PwwDAYDVR0T\n\
BAUwAwEB/zANBgkqhkiG9w0BAQsFAAOCAQEAfTjxKRQMzNB/U6ZoCUS+BSNfa2Oh\n\
0plMN6ZuzwiVVZwg1jywvv5yv04koS7Pd4i9E4gt9ZBUQXlpq+A3oOCEEHNRR6b2\n\
kyazGRM7s0OP5X21WrbpSmKmU6K7hkfx30yYs08LVs/Q8DIhvaj1FCFeJzUCzYn/\n\
fHMq4tsbKO0dKAeydPM/nrUZBmaYQVKMVOORGLFjFKVO7JV6Kq/R86ouhjEPgJOe\n\
2xulNBUcjicqtZlBdEh/PWCYP2SpGVDclKm8jeo175T3EVAkdKzzmfpxtMmnMlmq\n\
cTJOU9TxuGvNASMtjj7pYIerTx+xgZDXEVBWFW9PjJ0TV06tCRsgSHItgg==\n\
-----END CERTIFICATE-----\n";
pub const X0_SIGNER_SIG: &str = r#"BKyAfU4iMCuvXMXS0Wzam3V/cnxZ+JaqigPM5OhljS2iOT95OO6Fsuml2JkFANJU9K6q9bLlDhPXuoVz+pp4hAm6pHU4ld815U4jsKu1RkyaII+1CYBUYC8TK0XtJ8FwUXXz8vZHh58rrAVN1XwNyvD1vfpxrMT4SL536GLwvpUHlCqIMzoZUguLli/K8V29QiOhuH6IEqLNJn8e9b3nwNcQ7be3CzYGpDAKBfDGPCqCv8Rw5zndhlffk2FEA70G4hvMwe51qMN/RAJbknXG23bSlObuTCN7Ndj1aJGH6/L+hdwfLpUtJm4QYVazzW7DFD27EpSQEqA8bX9+8m1rLg=="#;
pub const X0_NOTIFY_SIG: &str = r#"tJHIiIS9eB2hAYstmAmbbD3ZE5LiIm/Ug5tuL4fC0YOFRWIHV39UFIZXC0e9Wl6lBu6sKvkqDkzpqzBsVHyXFlbYZTOQrVdG4b6LfTnK4mikv9++ixJMd3vTf2yCqvBkh98zs3Ds5zsYQakzbcwhmw4fMJs4nPLws28H0UW9FjDR//rxELLwXvV1VEA1IBLX70xptjL8hrfUjEE8kkry6yNJTHZRU8CAc7qHli2Ng1V1qb9ARbK8A3ThmFmPQvRGrapI/jS2laKKgYUmfdEdkNO6B2Cke5e8VTxY406ArAmQ90GAihDwIcb16TQMnzCMBoutnwZKNiKRACrFmtxw2Q=="#;
pub const X0_NOTIFY_BODY: &str = r#"{"id":"3119dfba-e649-5eec-ab1e-3412bc4d2e17","create_time":"2021-06-24T16:37:26+08:00","resource_type":"encrypt-resource","event_type":"PAYSCORE.USER_OPEN_SERVICE","summary":"签约成功","resource":{"original_type":"payscore","algorithm":"AEAD_AES_256_GCM","ciphertext":"YDS3lKPaC4Y52Gf3uhft5qUBlIa8b428AWTtTauHQfQrRw+X1WpiuHIDy0vo1Vd6VEq67aVyqPdDYMkRVSDaZL3iZttevRMOoPKMifozg6XPWjIZumks/GpT48lI4NizyeaqLBokNebthah3o1H76qSlO9NkDjp9bzmKLEYYH9TEklFUpsvPqOTOcgSLgh21YJXYR7dEBXFgRLiNIKRgO5JdXh1hccRUAlyVWxE54PXpnQ==","associated_data":"payscore","nonce":"Kj7QIyUiYx1q"}}"#;
pub const X0_NOTIFY_PLAIN: &str = r#"{"mchid":"1234567890","appid":"054aa7d7a2a54ab5898df65bd96f001c","create_time":"2020-06-30T12:12:00+08:00","out_contract_code":"21640bdbd08e473e828f3206a2741c6e"}"#;
pub const W1_BODY: &str = r#"{"appid":"wxd678efh567hg6787","mchid":"1230000109","description":"Image形象店-深圳腾大-QQ公仔","out_trade_no":"1217752501201407033233368018","notify_url":"https://www.weixin.qq.com/wxpay/pay.php","amount":{"total":100,"currency":"CNY"}}"#;
pub const W1_SIG: &str = r#"G7ADhrfaKVrrQb5dmPK/GTVXfkFEt6PFUUPc8eMsS5EZHVboq4+aT69gTAltdkfnzn+7/smBTjLtQj2EFOaQchOB4Uce/CU7loYBnwTgNEg7iGx7E12t0q1DQR2rC+xIqRJL1zqGKGuqqOD8SAEJfiiZzFhxRwayhvhkLpIqNOYuXHD2uJnBomf+RjuvyRiBtBabkueDGY08skMF2byICGr8u9pYIvcAdoIpZGhe37U1KFl54/Amhxsvn47pyj3mcVzK0S9XaFomnmZ4O+FpxpyFIxqqATF+fUt064Kv+jLJnc12JTZ6gtg5uyDK4alysbyFZDLhJV/jibUYxpmF4g=="#;
pub const W2_SIG: &str = r#"Mi6/vU9oV2sHqOtO5LZDQBvzCU+Hti+oFJOfyB0oyR0kxDgmeHmTqczM3gzb5jNY/uFYvtMBOke1DxYDEK6rSE3l7Y0Xp3WrgX7gZgRTHJAz/qFRze1qVxK1kWx1wcXs9jqWHy3BApmDEFO+2oBGfde4qmTG9oAMYmJZ3QTWVjNOKTaJ3lH5HbAdX+gFAO1PIOUmL8HnMlLWVNyW7BJzFFYiBvJmsSp5lgdW0Jw76oMZ0LCiPqe5FlzovlZQXx4uup7PMpGcUVzFQ69APJeBVQqAMuQJDiCbl5/XCi3eteFKVj0ZpQrcpJa+kynM0Z8TE/CwPMVR0c5b2xN1s7ofUQ=="#;
pub const W3_SIG: &str = r#"zmihXWvi/2B/NizmzAAGrSx4dniqBEAxgNobPZSLP7EIdCBL8ovERmNX0SIAcxYVr0uB23woFRuGndt24BSUKiMcIXckMxh5wlU9NJORaOZtkWNg00rWAepM61Yzrku+WrP0c8I8mgRozZlkrAWSFTYnYgxvp8Kh2/IDH1fZi2k5vXQWssk59YhVJq4kTO9soBeSKBVL582Y9ZcKYroNVeePQtIjdeXHAeB1u6jiU5iYSoA7M/cT/12TLojXDsGpuQcK8qhgeNnWvey8mTL5VEs18p8FNvdXim+FfSCJXhs+wGs56+IajSWNAVwwscCkFCve/hs9voNSvl1UPHxHag=="#;
pub const W4_PLAIN: &str = r#"{"mchid":"1230000109","appid":"wxd678efh567hg6787","out_trade_no":"1217752501201407033233368018","transaction_id":"4200000000202401010000000001","trade_type":"NATIVE","trade_state":"SUCCESS","trade_state_desc":"支付成功","bank_type":"OTHERS","attach":"","success_time":"2024-01-01T12:00:09+08:00","payer":{"openid":"oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},"amount":{"total":100,"payer_total":100,"currency":"CNY","payer_currency":"CNY"}}"#;
pub const W4_CT: &str = r#"Lgq9n/fzvpELqFDs0C/SioH2i4+jHPiqCaGp02JPcL1yD6JXwt4fU5QAfXOiZc4jvmC1AU5AITy1F17Fuja7yhytIc7+8jqROPN+Ror0NPWv6yLb9JC3MWMwVZvwCRr7KWWrLR/9hqHlxRnseEKXYlYrcNei2eL87DKleSVxW8mXH+yjgVbf+p796FBfcZW6H9OoouSEBuxQzbsonG9+iMuYAqfHO3IdYWAJXfd9FO4jr/BMmKk7mKjcejNTITooNEXvXRuXgH03zm5Yi+9kvRp5s1WSF0AODK64YrWyI854LkaLxgU19rO12aHb5bA9ezK7CvIILJX+QHnNDaLPgqgZ5Ih93BEAkLxqqJtTmA2wu/iKo2Mi9iQzvh7j60xbMttBQ5lbFlT/lZl4Lshbrv6X1tFuxIEdgzHWk5bNtQYGqiwGQ/kQz2+rt4oth3rgSG9q684zOjaN10AIxnmzddE/rDbiG+M1fBJBL5ZvpHAsa90E7gd92PdmYdHQNQpHopA8Qde6Zk4gO1iWYO9hbWnkIhWc9glH9UPQ1zb74ZiPynlgQtlgiVaD8zAFQB2y6yT05R8Tziip5RJwbvWbWw=="#;
pub const W4_SIG: &str = r#"VqFKsizSiz/PE9XtQa2WZZVDD68wmwb/5C1hRp2wwWpG1R5O1jsGal3vPGjeszWjQaEzos6oDHQsGlrTB+6MZUrqcN6nTAK6CuaLNK2wQsZC2Beh/O2x5O3tQOYb2Qe2I3ciETkgio32iULl7Xp5czfW9F1B4Ln5ihqWRyltaoh1WfY1X7kF45zH/5wes8Pwn5xHve3KUeBnAWRCuZOVMsrQWYwJ1pp3GnmLVn/AlV4HZIGy5kbd/6xjk0DYOUJLzAc946VL3OnX148YkdG6Mjnytkx8H1Bf8itHtD9FTeDPbTQm8wuNYndHlRftN4xmewUj4AeKnSxKszyNksgkEw=="#;
pub const W5_SIG: &str = r#"dlpClyhBr9pAFk1jQYtG0R9aFMJVaYKex+J+ZT/yH8DBwFn5NM+BIVtfIJ43ha4oF50dV0c5h8ziGCNJXVfnhu5e+WBW/E4sduswH7WNnZ9NMVLG0+dp7C/DKN4d99fc4GeAO7WtBFC+e7UyFdKppJxinKTeaQE6M49XWRd9/tc3/fUgsBJ9dBUDNctZXTRW07H7NBo1vQLVzN7N/zXynlOKKv5gnsprw4yZ1c16E3VXoK8nbxXoh/xQd9miXDsqzxIbveBX7Rp7QRjcXl4haR2yHgyRs2FGiHXrIoDNk2L51CR+HGU4WQUQwuOVvvx8hyBKK2ay3ZClHnMCtgkQag=="#;
