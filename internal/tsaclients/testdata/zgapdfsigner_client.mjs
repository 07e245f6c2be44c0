// Add a PDF document time-stamp from a TSA with zgapdfsigner.
//
// usage: node zgapdfsigner_client.mjs URL OUT_PDF
//
// A one-page PDF is made with pdf-lib (zgapdfsigner's own dependency);
// zgapdfsigner, given a TSA and no signing certificate, adds a document
// time-stamp (/SubFilter /ETSI.RFC3161) and the result is written to
// OUT_PDF. The caller checks the token over the signed byte range.
import { writeFileSync } from "node:fs";
import Zga from "zgapdfsigner";

const [url, outPath] = process.argv.slice(2);

const doc = await Zga.PDFLib.PDFDocument.create();
doc.setTitle("tsaclients");
doc.addPage([200, 200]);
const pdf = await doc.save({ useObjectStreams: false });

const signer = new Zga.PdfSigner({ signdate: { url } });
const out = await signer.sign(pdf);
writeFileSync(outPath, out);
console.log(`signed PDF: ${out.length} bytes`);
